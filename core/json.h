// JSON helpers: reading a person-written JSON document field by field with
// errors that name the file, the field and what was expected.
//
//   ORRERY_ASSIGN_OR_RETURN(nlohmann::json doc, ReadJsonFile(path));
//   JsonReader node(doc, path);                     // the document's root
//   ORRERY_ASSIGN_OR_RETURN(int64_t n, node.Int("devices_per_node"));
//   ORRERY_ASSIGN_OR_RETURN(double f, node.Number("oversubscription", 1.0));
//   ORRERY_RETURN_IF_ERROR(node.RejectUnknownFields());  // catches typos
//
// A failed read says, for instance:
//   cluster.json: field 'nodes[0].devices_per_node': expected an integer, got "8"
//
// This header brings in nlohmann/json; include it only where JSON is parsed
// or written, not from headers that everything includes.
//
// Thread-safety: a JsonReader is not thread-safe (it records which fields
// were read); distinct readers may be used from distinct threads.
#ifndef ORRERY_CORE_JSON_H_
#define ORRERY_CORE_JSON_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace orrery {

using Json = nlohmann::ordered_json;

// Parses `text`; `source` names it in errors (a path, or "<stdin>").
Result<Json> ParseJson(std::string_view text, std::string_view source);
// Reads and parses the file at `path`.
Result<Json> ReadJsonFile(const std::string& path);
// Serializes `value` with two-space indentation and a final newline.
std::string DumpJson(const Json& value);

// A view of one JSON object inside a document.
class JsonReader {
 public:
  // `source` names the document in errors; `path` is this object's place in
  // it ("" for the root, "nodes[0]" for an element). The referenced JSON must
  // outlive the reader.
  JsonReader(const Json& value, std::string source, std::string path = "");

  // OK when the value is a JSON object; every accessor below requires it.
  Status ExpectObject() const;

  bool Has(std::string_view key) const;

  // Required fields: an error when absent or of the wrong type.
  Result<int64_t> Int(std::string_view key) const;
  Result<double> Number(std::string_view key) const;
  Result<std::string> String(std::string_view key) const;
  Result<bool> Bool(std::string_view key) const;
  Result<JsonReader> Object(std::string_view key) const;
  // An array whose elements are objects, each as a reader ("key[i]").
  Result<std::vector<JsonReader>> ObjectArray(std::string_view key) const;
  Result<std::vector<int64_t>> IntArray(std::string_view key) const;

  // Optional fields: `fallback` when absent, an error when of the wrong type.
  Result<int64_t> Int(std::string_view key, int64_t fallback) const;
  Result<double> Number(std::string_view key, double fallback) const;
  Result<std::string> String(std::string_view key, std::string fallback) const;
  Result<bool> Bool(std::string_view key, bool fallback) const;

  // Required field that must be > 0 (or >= 0 with the NonNegative forms).
  Result<int64_t> PositiveInt(std::string_view key) const;
  Result<int64_t> PositiveInt(std::string_view key, int64_t fallback) const;
  Result<double> PositiveNumber(std::string_view key) const;
  Result<double> PositiveNumber(std::string_view key, double fallback) const;
  Result<double> NonNegativeNumber(std::string_view key, double fallback) const;

  // An error for the fields of this object that no accessor has read, naming
  // them and the fields that are known.
  Status RejectUnknownFields() const;

  // An InvalidArgument status about `key` of this object:
  //   "<source>: field '<path.key>': <what>"
  Status FieldError(std::string_view key, std::string_view what) const;
  // The same about this object itself.
  Status Error(std::string_view what) const;

  // "nodes[0].devices_per_node".
  std::string FieldPath(std::string_view key) const;
  const std::string& source() const { return source_; }
  const Json& json() const { return *value_; }

 private:
  const Json* Find(std::string_view key) const;
  Status TypeError(std::string_view key, std::string_view expected) const;

  const Json* value_;
  std::string source_;
  std::string path_;
  mutable std::set<std::string, std::less<>> read_;
};

// A short rendering of a JSON value for error messages (at most ~60 chars).
std::string JsonSnippet(const Json& value);

// The number to write for a quantity so that reading it back with `from`
// (the JSON unit's constructor, e.g. GBps) gives the same quantity
// exactly: `approx` (the quantity in the JSON unit) rounded to 12
// significant digits when that reads back equal, else the nearest double
// that does (within 64 ulps), else `approx`. Used by every writer of
// exact-integer quantities (units.h) as decimal JSON numbers.
template <typename Q, typename From>
double ExactDecimal(const Q& quantity, double approx, From from) {
  auto reads_back = [&](double v) { return from(v) == quantity; };
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.12g", approx);
  const double pretty = std::strtod(buf, nullptr);
  if (reads_back(pretty)) return pretty;
  if (reads_back(approx)) return approx;
  double up = approx;
  double down = approx;
  for (int i = 0; i < 64; ++i) {
    up = std::nextafter(up, std::numeric_limits<double>::infinity());
    if (reads_back(up)) return up;
    down = std::nextafter(down, -std::numeric_limits<double>::infinity());
    if (reads_back(down)) return down;
  }
  return approx;
}

// `value` as a JSON integer when it is integral (and below 1e15 in
// magnitude), else as a JSON double: "80" rather than "80.0".
Json IntegralOrDouble(double value);

}  // namespace orrery

#endif  // ORRERY_CORE_JSON_H_
