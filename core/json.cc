#include "core/json.h"

#include <cmath>
#include <sstream>

#include "core/file.h"

namespace orrery {

Result<Json> ParseJson(std::string_view text, std::string_view source) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    // nlohmann's message starts "[json.exception.parse_error.101] parse error at ...".
    std::string what = e.what();
    const auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    return InvalidArgumentError(std::string(source) + ": not valid JSON: " + what);
  }
}

Result<Json> ReadJsonFile(const std::string& path) {
  ORRERY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseJson(text, path);
}

std::string DumpJson(const Json& value) { return value.dump(2) + "\n"; }

std::string JsonSnippet(const Json& value) {
  std::string s = value.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

namespace {
std::string TypeName(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}
}  // namespace

JsonReader::JsonReader(const Json& value, std::string source, std::string path)
    : value_(&value), source_(std::move(source)), path_(std::move(path)) {}

Status JsonReader::ExpectObject() const {
  if (value_->is_object()) return Status::Ok();
  return Error("expected an object, got " + TypeName(*value_) + " " + JsonSnippet(*value_));
}

std::string JsonReader::FieldPath(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  return path_ + "." + std::string(key);
}

Status JsonReader::FieldError(std::string_view key, std::string_view what) const {
  return InvalidArgumentError(source_ + ": field '" + FieldPath(key) + "': " + std::string(what));
}

Status JsonReader::Error(std::string_view what) const {
  if (path_.empty()) return InvalidArgumentError(source_ + ": " + std::string(what));
  return InvalidArgumentError(source_ + ": '" + path_ + "': " + std::string(what));
}

const Json* JsonReader::Find(std::string_view key) const {
  if (!value_->is_object()) return nullptr;
  read_.emplace(key);
  auto it = value_->find(std::string(key));
  if (it == value_->end()) return nullptr;
  return &*it;
}

bool JsonReader::Has(std::string_view key) const { return Find(key) != nullptr; }

Status JsonReader::TypeError(std::string_view key, std::string_view expected) const {
  const Json* v = Find(key);
  if (v == nullptr) return FieldError(key, "missing (expected " + std::string(expected) + ")");
  return FieldError(key, "expected " + std::string(expected) + ", got " + JsonSnippet(*v));
}

Result<int64_t> JsonReader::Int(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_number_integer()) return TypeError(key, "an integer");
  return v->get<int64_t>();
}

Result<double> JsonReader::Number(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_number()) return TypeError(key, "a number");
  return v->get<double>();
}

Result<std::string> JsonReader::String(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_string()) return TypeError(key, "a string");
  return v->get<std::string>();
}

Result<bool> JsonReader::Bool(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_boolean()) return TypeError(key, "true or false");
  return v->get<bool>();
}

Result<JsonReader> JsonReader::Object(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_object()) return TypeError(key, "an object");
  return JsonReader(*v, source_, FieldPath(key));
}

Result<std::vector<JsonReader>> JsonReader::ObjectArray(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_array()) return TypeError(key, "an array of objects");
  std::vector<JsonReader> out;
  for (size_t i = 0; i < v->size(); ++i) {
    JsonReader element((*v)[i], source_, FieldPath(key) + "[" + std::to_string(i) + "]");
    ORRERY_RETURN_IF_ERROR(element.ExpectObject());
    out.push_back(std::move(element));
  }
  return out;
}

Result<std::vector<int64_t>> JsonReader::IntArray(std::string_view key) const {
  const Json* v = Find(key);
  if (v == nullptr || !v->is_array()) return TypeError(key, "an array of integers");
  std::vector<int64_t> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_number_integer()) {
      return FieldError(std::string(key) + "[" + std::to_string(i) + "]",
                        "expected an integer, got " + JsonSnippet((*v)[i]));
    }
    out.push_back((*v)[i].get<int64_t>());
  }
  return out;
}

Result<int64_t> JsonReader::Int(std::string_view key, int64_t fallback) const {
  if (!Has(key)) return fallback;
  return Int(key);
}
Result<double> JsonReader::Number(std::string_view key, double fallback) const {
  if (!Has(key)) return fallback;
  return Number(key);
}
Result<std::string> JsonReader::String(std::string_view key, std::string fallback) const {
  if (!Has(key)) return fallback;
  return String(key);
}
Result<bool> JsonReader::Bool(std::string_view key, bool fallback) const {
  if (!Has(key)) return fallback;
  return Bool(key);
}

Result<int64_t> JsonReader::PositiveInt(std::string_view key) const {
  ORRERY_ASSIGN_OR_RETURN(int64_t v, Int(key));
  if (v <= 0) return FieldError(key, "expected a positive integer, got " + std::to_string(v));
  return v;
}
Result<int64_t> JsonReader::PositiveInt(std::string_view key, int64_t fallback) const {
  if (!Has(key)) return fallback;
  return PositiveInt(key);
}
Result<double> JsonReader::PositiveNumber(std::string_view key) const {
  ORRERY_ASSIGN_OR_RETURN(double v, Number(key));
  if (!(v > 0.0)) return FieldError(key, "expected a positive number, got " + JsonSnippet(v));
  return v;
}
Result<double> JsonReader::PositiveNumber(std::string_view key, double fallback) const {
  if (!Has(key)) return fallback;
  return PositiveNumber(key);
}
Result<double> JsonReader::NonNegativeNumber(std::string_view key, double fallback) const {
  if (!Has(key)) return fallback;
  ORRERY_ASSIGN_OR_RETURN(double v, Number(key));
  if (!(v >= 0.0)) return FieldError(key, "expected a number >= 0, got " + JsonSnippet(v));
  return v;
}

Status JsonReader::RejectUnknownFields() const {
  if (!value_->is_object()) return Status::Ok();
  std::vector<std::string> unknown;
  for (auto it = value_->begin(); it != value_->end(); ++it) {
    if (read_.find(it.key()) == read_.end()) unknown.push_back(it.key());
  }
  if (unknown.empty()) return Status::Ok();
  std::ostringstream known;
  bool first = true;
  for (const std::string& k : read_) {
    known << (first ? "" : ", ") << k;
    first = false;
  }
  return FieldError(unknown.front(), "unknown field (known fields here: " + known.str() + ")");
}

Json IntegralOrDouble(double value) {
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return static_cast<int64_t>(value);
  }
  return value;
}

}  // namespace orrery
