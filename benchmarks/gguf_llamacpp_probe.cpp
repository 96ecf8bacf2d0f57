// llama.cpp's side of benchmarks/gguf_llamacpp_agreement.py, against libllama's C API only (llama.h of the pinned
// llama-cpp-python sdist, vendor/llama.cpp); built by that script next to libllama.
//
//   probe tokenize MODEL.gguf TEXTS   texts separated by NUL bytes; one JSON array of token ids per text
//                                     (add_special false, parse_special true: transformers' encode without
//                                     special tokens; the vocabulary only is loaded)
//   probe greedy MODEL.gguf N TEXTS [MODE]
//                                     per text (a prompt): its ids (add_special true, as llama-simple) and N greedy
//                                     steps, each the top 5 (id, logit) of the last position, argmax first. MODE
//                                     f32 (default): f32 KV cache and no flash attention (which computes in f16 on
//                                     the CPU), the conversion alone; `default`: llama.cpp's context defaults
//                                     (f16 KV cache, flash attention auto)
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static std::vector<std::string> read_texts(const char * path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string all = ss.str();
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i <= all.size(); ++i) {
        if (i == all.size() || all[i] == '\0') {
            if (i > start || i < all.size()) out.push_back(all.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text, bool add_special) {
    int n = -llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), nullptr, 0, add_special, true);
    std::vector<llama_token> ids(std::max(n, 0));
    if (n > 0 && llama_tokenize(vocab, text.c_str(), (int32_t) text.size(), ids.data(), n, add_special, true) != n) {
        fprintf(stderr, "probe: tokenization failed\n");
        exit(1);
    }
    return ids;
}

static void print_ids(const std::vector<llama_token> & ids) {
    printf("[");
    for (size_t i = 0; i < ids.size(); ++i) printf(i ? ", %d" : "%d", ids[i]);
    printf("]");
}

static void quiet(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || getenv("CPT_PROBE_LOG")) fputs(text, stderr);
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s tokenize MODEL TEXTS | greedy MODEL N TEXTS\n", argv[0]);
        return 2;
    }
    const bool greedy = strcmp(argv[1], "greedy") == 0;
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = !greedy;
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[2], mp);
    if (!model) {
        fprintf(stderr, "probe: cannot load %s\n", argv[2]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    if (!greedy) {
        for (const auto & text : read_texts(argv[3])) {
            print_ids(tokenize(vocab, text, false));
            printf("\n");
        }
        llama_model_free(model);
        return 0;
    }
    const int n_predict = atoi(argv[3]);
    const bool defaults = argc > 5 && strcmp(argv[5], "default") == 0;
    const int n_vocab = llama_vocab_n_tokens(vocab);
    for (const auto & prompt : read_texts(argv[4])) {
        std::vector<llama_token> ids = tokenize(vocab, prompt, true);
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = (uint32_t) (ids.size() + n_predict + 8);
        cp.n_batch = cp.n_ctx;
        cp.n_threads = cp.n_threads_batch = 1;
        if (!defaults) {
            cp.type_k = cp.type_v = GGML_TYPE_F32;
            cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        }
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) {
            fprintf(stderr, "probe: cannot create a context\n");
            return 1;
        }
        printf("{\"ids\": ");
        print_ids(ids);
        printf(", \"steps\": [");
        std::vector<llama_token> next = ids;
        for (int step = 0; step < n_predict; ++step) {
            if (llama_decode(ctx, llama_batch_get_one(next.data(), (int32_t) next.size())) != 0) {
                fprintf(stderr, "probe: decode failed\n");
                return 1;
            }
            const float * logits = llama_get_logits_ith(ctx, -1);
            std::vector<int> order(n_vocab);
            for (int i = 0; i < n_vocab; ++i) order[i] = i;
            std::partial_sort(order.begin(), order.begin() + 5, order.end(),
                              [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
            printf(step ? ", [" : "[");
            for (int k = 0; k < 5; ++k) printf(k ? ", [%d, %.9g]" : "[%d, %.9g]", order[k], logits[order[k]]);
            printf("]");
            next.assign(1, order[0]);
        }
        printf("]}\n");
        fflush(stdout);
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
