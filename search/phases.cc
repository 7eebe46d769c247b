#include "search/phases.h"

// Not built yet: the helper building issue #10's phase planning replaces this.
namespace orrery::search {

Result<PhasePlan> PlanPhases(const PhasePlanningRequest&, const ProgressFn&) {
  return UnimplementedError("search --phases: not built yet");
}

Result<std::vector<int>> ChooseSchedule(const std::vector<std::vector<double>>&,
                                        const std::function<double(int, int, int)>&) {
  return UnimplementedError("search --phases: not built yet");
}

std::string PhasePlanToText(const PhasePlanningRequest&, const PhasePlan&) { return ""; }
Json PhasePlanToJson(const PhasePlanningRequest&, const PhasePlan&) { return Json::object(); }
workload::PhaseSchedule ScheduleWithPlans(const PhasePlanningRequest& request, const PhasePlan&) {
  return request.schedule;
}

}  // namespace orrery::search
