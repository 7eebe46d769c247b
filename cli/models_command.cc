// `orrery models`: list the model presets, or describe one model (a preset,
// a HuggingFace config.json or an Orrery model JSON) with its exact
// parameter count.
#include <cstdio>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/subcommands.h"
#include "core/json.h"
#include "workload/hf_import.h"
#include "workload/model_json.h"
#include "workload/model_presets.h"
#include "workload/model_spec.h"

namespace orrery::cli {

namespace {

namespace po = boost::program_options;
using workload::ModelSpec;

constexpr std::string_view kCommand = "models";

constexpr std::string_view kUsage = "orrery models [--model NAME|PATH] [--format text|json]";

constexpr std::string_view kDescription =
    "Without --model, lists the built-in model presets: family, exact parameter\n"
    "count (in billions here; exact with --format json), transformer layers\n"
    "(encoder+decoder for T5), hidden size, attention heads / key-value heads and\n"
    "the training sequence length that plans use by default.\n"
    "\n"
    "With --model, describes one model. NAME is a preset; PATH is a HuggingFace\n"
    "config.json (model_type llama, mistral, mixtral, gpt2, bert, t5 or vit), a\n"
    "directory holding one, or an Orrery model JSON (the --format json output).\n"
    "Parameter counts are exact: what transformers' model.num_parameters()\n"
    "reports for the HuggingFace families, the sum of Megatron-LM's weights for\n"
    "the gpt-* presets. docs/models.md gives the sources and the formulas.";

constexpr std::string_view kExamples =
    "  orrery models\n"
    "  orrery models --model llama3-70b\n"
    "  orrery models --model mixtral-8x7b --format json\n"
    "  orrery models --model ~/models/Meta-Llama-3.1-8B/config.json\n"
    "  orrery models --format json > presets.json\n";

// 70553706496 → "70,553,706,496".
std::string WithThousands(int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const int lead = static_cast<int>(digits.size()) % 3;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (static_cast<int>(i) - lead) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Billions(int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fB", static_cast<double>(n) / 1e9);
  return buf;
}

std::string Layers(const ModelSpec& m) {
  if (m.num_encoder_layers > 0) {
    return std::to_string(m.num_encoder_layers) + "+" + std::to_string(m.num_layers);
  }
  return std::to_string(m.num_layers);
}

std::string PadRight(std::string s, size_t width) {
  if (s.size() < width) s.resize(width, ' ');
  return s;
}

std::string PadLeft(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

std::string PresetTable() {
  std::ostringstream out;
  out << "Model presets (" << workload::ModelPresets().size()
      << "); parameters in billions, exact with --format json\n\n";
  out << PadRight("name", 14) << PadRight("family", 9) << PadLeft("parameters", 10)
      << PadLeft("layers", 8) << PadLeft("hidden", 8) << PadLeft("heads/kv", 10)
      << PadLeft("seq", 7) << "\n";
  for (const ModelSpec& m : workload::ModelPresets()) {
    out << PadRight(m.name, 14) << PadRight(std::string(workload::ModelFamilyName(m.family)), 9)
        << PadLeft(Billions(m.ParameterCount()), 10) << PadLeft(Layers(m), 8)
        << PadLeft(std::to_string(m.hidden_size), 8)
        << PadLeft(std::to_string(m.num_attention_heads) + "/" + std::to_string(m.num_kv_heads), 10)
        << PadLeft(std::to_string(m.default_sequence_length), 7) << "\n";
  }
  out << "\n'orrery models --model NAME' describes one; --model also takes a HuggingFace\n"
         "config.json.\n";
  return out.str();
}

std::string Describe(const ModelSpec& m) {
  std::ostringstream out;
  auto row = [&out](std::string_view label, const std::string& value) {
    out << "  " << PadRight(std::string(label), 20) << value << "\n";
  };
  const int64_t params = m.ParameterCount();
  out << m.name << " (" << workload::ModelFamilyName(m.family) << ", "
      << workload::ArchitectureName(m.architecture) << ")\n";
  row("parameters", WithThousands(params) + " (" + Billions(params) + ")");
  if (m.num_encoder_layers > 0) {
    row("layers", std::to_string(m.num_encoder_layers) + " encoder + " +
                      std::to_string(m.num_layers) + " decoder");
  } else {
    row("layers", std::to_string(m.num_layers));
  }
  row("hidden size", std::to_string(m.hidden_size));
  row("attention heads", std::to_string(m.num_attention_heads) + " (" +
                             std::to_string(m.num_kv_heads) + " key/value, head dim " +
                             std::to_string(m.head_dim) + ")");
  row("FFN hidden size", std::to_string(m.ffn_hidden_size) + " (" +
                             std::string(workload::ActivationName(m.activation)) + ")");
  if (m.is_moe()) {
    row("experts",
        std::to_string(m.num_experts) + ", " + std::to_string(m.experts_per_token) + " per token");
  }
  if (m.family == workload::ModelFamily::kVit) {
    row("image", std::to_string(m.image_size) + "x" + std::to_string(m.image_size) + ", " +
                     std::to_string(m.patch_size) + "x" + std::to_string(m.patch_size) +
                     " patches, " + std::to_string(m.num_channels) + " channels");
  } else {
    row("vocabulary", std::to_string(m.vocab_size));
  }
  row("sequence length", std::to_string(m.default_sequence_length) + " (training), " +
                             std::to_string(m.max_sequence_length) + " (max)");
  row("norm", std::string(workload::NormKindName(m.norm)));
  row("position embedding", std::string(workload::PositionEmbeddingName(m.position_embedding)));
  row("linear biases", m.linear_bias ? "yes" : "no");
  if (m.family != workload::ModelFamily::kVit) {
    row("tied embeddings", m.tied_embeddings ? "yes" : "no");
  }
  std::vector<std::string> heads;
  if (m.pooler) heads.push_back("pooler");
  if (m.mlm_head) heads.push_back("masked-LM head");
  if (m.num_classes > 0) heads.push_back(std::to_string(m.num_classes) + "-class head");
  if (!heads.empty()) {
    std::string h;
    for (const std::string& s : heads) h += (h.empty() ? "" : ", ") + s;
    row("heads counted", h);
  }
  row("source", m.source);
  return out.str();
}

}  // namespace

int RunModels(const std::vector<std::string>& args, CommandIo& io) {
  po::options_description options("Options");
  options.add_options()("model", po::value<std::string>(),
                        "a preset name, a HuggingFace config.json (or its directory), or an "
                        "Orrery model JSON");
  AddFormatOption(options);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  if (std::optional<int> code = ParseOptions(kCommand, kUsage, kDescription, kExamples, options,
                                             args, vm, io, &positional)) {
    return *code;
  }
  Result<OutputFormat> format = GetFormat(vm);
  if (!format.ok()) return ReportError(kCommand, format.status(), io);

  if (vm.count("model") == 0) {
    if (*format == OutputFormat::kJson) {
      Json list = Json::array();
      for (const ModelSpec& m : workload::ModelPresets())
        list.push_back(workload::ModelSpecToJson(m));
      Json doc = Json::object();
      doc["models"] = std::move(list);
      io.out << DumpJson(doc);
    } else {
      io.out << PresetTable();
    }
    return kExitOk;
  }

  Result<ModelSpec> model = workload::LoadModel(vm["model"].as<std::string>());
  if (!model.ok()) return ReportError(kCommand, model.status(), io);
  if (*format == OutputFormat::kJson) {
    io.out << DumpJson(workload::ModelSpecToJson(*model));
  } else {
    io.out << Describe(*model);
  }
  return kExitOk;
}

}  // namespace orrery::cli
