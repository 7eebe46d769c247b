// Placeholder: being written.
namespace orrery::exec {}
