// Placeholder: being written.
namespace orrery::traces {}
