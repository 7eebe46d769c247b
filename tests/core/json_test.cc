#include "core/json.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "core/file.h"

namespace orrery {
namespace {

Json Parse(const char* text) { return ParseJson(text, "test.json").value(); }

TEST(JsonReader, ReadsRequiredAndOptionalFields) {
  Json doc = Parse(R"({"n": 8, "bw": 450.5, "name": "leaf", "rail": true})");
  JsonReader r(doc, "test.json");
  EXPECT_EQ(r.Int("n").value(), 8);
  EXPECT_DOUBLE_EQ(r.Number("bw").value(), 450.5);
  EXPECT_EQ(r.String("name").value(), "leaf");
  EXPECT_TRUE(r.Bool("rail").value());
  EXPECT_EQ(r.Int("absent", 3).value(), 3);
  EXPECT_TRUE(r.RejectUnknownFields().ok());
}

TEST(JsonReader, NamesTheFileTheFieldAndWhatWasExpected) {
  Json doc = Parse(R"({"nodes": [{"devices_per_node": "8"}]})");
  JsonReader root(doc, "cluster.json");
  auto nodes = root.ObjectArray("nodes").value();
  Result<int64_t> n = nodes[0].Int("devices_per_node");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().message(),
            "cluster.json: field 'nodes[0].devices_per_node': expected an integer, got \"8\"");
}

TEST(JsonReader, MissingFieldSaysMissing) {
  Json doc = Parse(R"({})");
  JsonReader r(doc, "m.json");
  EXPECT_EQ(r.Int("layers").status().message(),
            "m.json: field 'layers': missing (expected an integer)");
}

TEST(JsonReader, PositiveIntRejectsZero) {
  Json doc = Parse(R"({"count": 0})");
  JsonReader r(doc, "c.json");
  EXPECT_EQ(r.PositiveInt("count").status().message(),
            "c.json: field 'count': expected a positive integer, got 0");
}

TEST(JsonReader, RejectsUnknownFieldsNamingTheKnownOnes) {
  Json doc = Parse(R"({"count": 2, "devices_per_nod": 8})");
  JsonReader r(doc, "c.json");
  ASSERT_TRUE(r.Int("count").ok());
  (void)r.Int("devices_per_node", 1);
  Status s = r.RejectUnknownFields();
  EXPECT_EQ(s.message(),
            "c.json: field 'devices_per_nod': unknown field (known fields here: count, "
            "devices_per_node)");
}

TEST(Json, ParseErrorNamesTheSource) {
  Result<Json> bad = ParseJson("{\"a\": }", "broken.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("broken.json: not valid JSON"), std::string::npos);
}

TEST(File, AtomicWriteLeavesNoTemporaryBehind) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "orrery_file_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "out.json").string();
  ASSERT_TRUE(WriteFileAtomically(path, "{}\n").ok());
  EXPECT_EQ(ReadFile(path).value(), "{}\n");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1);
  std::filesystem::remove_all(dir);
}

TEST(File, WriteIntoAMissingDirectoryFails) {
  Status s = WriteFileAtomically("/nonexistent-dir/x.json", "{}");
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("/nonexistent-dir/x.json"), std::string::npos);
}

}  // namespace
}  // namespace orrery
