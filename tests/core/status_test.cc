#include "core/status.h"

#include <gtest/gtest.h>

namespace orrery {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) return InvalidArgumentError("expected a positive integer, got " + std::to_string(v));
  return v;
}

Result<int> Doubled(int v) {
  ORRERY_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  return 2 * x;
}

Status CheckBoth(int a, int b) {
  ORRERY_RETURN_IF_ERROR(ParsePositive(a));
  ORRERY_RETURN_IF_ERROR(ParsePositive(b).status().WithContext("b"));
  return Status::Ok();
}

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(Status, WithContextPrefixesTheMessage) {
  Status s = NotFoundError("no preset 'foo'").WithContext("cluster.json");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "cluster.json: no preset 'foo'");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
}

TEST(Result, CarriesAValueOrAStatus) {
  Result<int> good = Doubled(4);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 8);
  Result<int> bad = Doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "expected a positive integer, got -1");
}

TEST(Result, ReturnIfErrorStopsAtTheFirstFailure) {
  EXPECT_TRUE(CheckBoth(1, 2).ok());
  EXPECT_EQ(CheckBoth(1, -2).message(), "b: expected a positive integer, got -2");
  EXPECT_EQ(CheckBoth(-1, -2).message(), "expected a positive integer, got -1");
}

TEST(ResultDeathTest, ValueOfAFailedResultIsABug) {
  Result<int> bad = Doubled(0);
  EXPECT_DEATH((void)bad.value(), "value\\(\\) of a failed Result");
}

}  // namespace
}  // namespace orrery
