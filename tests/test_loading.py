"""`slam_trainer.loading`: the one loader reads every kind of model name the package accepts, with TRL's defaults."""

import pytest
import torch

from slam_trainer.errors import ConfigError, ModelError
from slam_trainer.freezing import freeze_except_ffn
from slam_trainer.loading import load_model, load_model_and_tokenizer, model_init_defaults, read_model_config
from slam_trainer.tiny import build_tiny_model, build_tiny_tokenizer


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    build_tiny_model("llama", seed=3).save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)
    return str(folder)


def assert_same_weights(model, reference):
    expected = reference.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_local_folder_loads_the_saved_weights_in_float32_on_the_cpu(saved_model):
    model, tokenizer = load_model_and_tokenizer(saved_model)
    assert type(model).__name__ == "LlamaForCausalLM"  # the checkpoint's declared architecture
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert_same_weights(model, build_tiny_model("llama", seed=3))
    assert tokenizer("abc")["input_ids"] == build_tiny_tokenizer()("abc")["input_ids"]


def test_auto_dtype_is_the_stored_dtype(tmp_path):
    build_tiny_model("llama").to(torch.bfloat16).save_pretrained(tmp_path)
    build_tiny_tokenizer().save_pretrained(tmp_path)
    assert load_model(str(tmp_path), {"dtype": "auto"}).dtype == torch.bfloat16
    assert load_model(str(tmp_path)).dtype == torch.float32


def test_tiny_names_build_the_same_model_whatever_the_seed():
    model, tokenizer = load_model_and_tokenizer("tiny:llama", seed=123)
    assert_same_weights(model, build_tiny_model("llama"))
    other = load_model("tiny:llama", tiny_overrides={"seed": 5, "num_layers": 2})
    assert other.config.num_hidden_layers == 2
    assert not torch.equal(other.lm_head.weight, model.lm_head.weight)
    assert read_model_config("tiny:llama").num_hidden_layers == 4


def test_delta_is_applied_on_the_base(saved_model, tmp_path):
    from slam_trainer.delta import save_ffn_delta

    trained = build_tiny_model("llama", seed=3)
    freeze_except_ffn(trained, [1])
    with torch.no_grad():
        trained.model.layers[1].mlp.up_proj.weight.add_(1.0)
    save_ffn_delta(trained, str(tmp_path / "delta"), base_model=saved_model)
    model = load_model(saved_model, delta=str(tmp_path / "delta"))
    assert_same_weights(model, trained)


def test_peft_adapter_folder_loads_on_its_base(saved_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_model(saved_model)  # its config records the folder, which the adapter's config names
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["up_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path)
    expected = peft_model.merge_and_unload()
    model, tokenizer = load_model_and_tokenizer(str(tmp_path))  # no tokenizer saved: the base's
    assert_same_weights(model, expected)
    assert tokenizer.pad_token == "<pad>"
    kept = load_model(str(tmp_path), merge_adapter=False)
    assert isinstance(kept, PeftModel)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: load_model(None), ConfigError, "`model_name_or_path` is required"),
        (lambda: load_model("/no/such/folder"), ModelError, "not a model directory or Hub id"),
        (lambda: model_init_defaults({"dtype": "fp8"}), ConfigError, "`dtype` must be 'auto'"),
        (lambda: load_model("tiny:nope"), ConfigError, "Unknown tiny architecture 'nope'"),
    ],
    ids=["no model", "bad folder", "bad dtype", "bad tiny"],
)
def test_bad_model_names_are_user_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_delta_on_an_adapter_is_refused(saved_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    get_peft_model(load_model(saved_model), LoraConfig(r=2, target_modules=["up_proj"])).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="`delta` applies to a full base model"):
        load_model(str(tmp_path), delta="anything")
