// StrongId<Tag>: a 32-bit index that only compares with indices of the same
// kind, so a topology vertex cannot be passed where a link is expected.
//
//   using LinkId = StrongId<struct LinkIdTag>;
//   LinkId id(3);  id.value() == 3
//
// Thread-safety: a value type.
#ifndef ORRERY_CORE_STRONG_ID_H_
#define ORRERY_CORE_STRONG_ID_H_

#include <compare>
#include <cstdint>

namespace orrery {

template <typename Tag>
class StrongId {
 public:
  constexpr StrongId() = default;
  explicit constexpr StrongId(uint32_t value) : value_(value) {}
  constexpr uint32_t value() const { return value_; }
  friend constexpr auto operator<=>(StrongId, StrongId) = default;

 private:
  uint32_t value_ = 0;
};

}  // namespace orrery

#endif  // ORRERY_CORE_STRONG_ID_H_
