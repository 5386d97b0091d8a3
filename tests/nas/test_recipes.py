"""Recipes: the papers' settings, schedules, validation and override precedence."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from nas.recipes import (
    RECIPES,
    Recipe,
    RecipeError,
    get_recipe,
    load_config_file,
    parse_field,
    recipe_fields,
    resolve_recipe,
)


def test_cifar_recipe_is_the_scconv_papers_cifar_setting():
    r = get_recipe("cifar")
    assert (r.optimizer, r.momentum, r.weight_decay, r.nesterov) == ("sgd", 0.9, 5e-4, False)
    assert (r.lr, r.batch_size, r.epochs, r.augment) == (0.05, 128, 200, "cifar")
    lrs = {e: r.lr_at(e) for e in (0, 99, 100, 149, 150, 199)}
    expected = {0: 0.05, 99: 0.05, 100: 0.005, 149: 0.005, 150: 0.0005, 199: 0.0005}
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_imagenet_recipe_divides_lr_by_ten_every_30_epochs():
    r = get_recipe("imagenet")
    assert (r.optimizer, r.momentum, r.weight_decay, r.epochs) == ("sgd", 0.9, 1e-4, 100)
    assert r.augment == "imagenet"
    got = [r.lr_at(e) for e in (0, 29, 30, 59, 60, 89, 90, 99)]
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4], rel=1e-12)


@pytest.mark.parametrize("name", ["cifar-cosine", "imagenet-cosine"])
def test_cosine_recipes_anneal_from_lr_to_zero(name):
    r = get_recipe(name)
    lrs = [r.lr_at(e) for e in range(r.epochs)]
    assert lrs[0] == pytest.approx(r.lr)
    assert r.lr_at(r.epochs // 2) == pytest.approx(r.lr / 2)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert 0 < lrs[-1] < r.lr * 1e-3
    # The closed form, at an arbitrary epoch.
    assert r.lr_at(37) == pytest.approx(r.lr * 0.5 * (1 + math.cos(math.pi * 37 / r.epochs)))


def test_warmup_ramps_linearly_then_follows_the_schedule():
    r = get_recipe("cifar").replace(warmup_epochs=4, schedule="cosine", epochs=20)
    assert [r.lr_factor(e) for e in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert r.lr_factor(4) == pytest.approx(1.0)
    assert r.lr_factor(12) == pytest.approx(0.5)  # half-way through the 16 cosine epochs


def test_constant_schedule_keeps_the_lr():
    r = get_recipe("cifar").replace(schedule="constant")
    assert {r.lr_at(e) for e in range(0, 200, 7)} == {0.05}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"epochs": -3}, r"epochs must be an integer >= 1"),
        ({"epochs": 2.5}, r"epochs must be an integer"),
        ({"lr": 0.0}, r"lr must be a positive number, got 0.0"),
        ({"lr": float("nan")}, r"lr must be a positive number"),
        ({"momentum": 1.0}, r"momentum must be a number >= 0.0 and < 1.0, got 1.0"),
        ({"optimizer": "lion"}, r"optimizer must be one of sgd, adam, adamw, got 'lion'"),
        ({"schedule": "poly"}, r"schedule must be one of multistep, step, cosine, constant"),
        ({"milestones": (150, 100)}, r"milestones must be strictly increasing"),
        ({"milestones": (0, 10)}, r"milestones must be a list of epochs >= 1"),
        ({"gamma": 2.0}, r"gamma must be a number >= 0.0 and <= 1.0, got 2.0"),
        ({"warmup_epochs": 200}, r"warmup_epochs must be smaller than epochs \(200\)"),
        ({"augment": "mixup"}, r"augment must be one of cifar, imagenet, none"),
        ({"val_fraction": 1.0}, r"val_fraction must be a number >= 0.0 and < 1.0"),
        ({"batch_size": True}, r"batch_size must be an integer >= 1, got True"),
        ({"linearconv_every": 0}, r"linearconv_every must be an integer >= 1"),
        ({"optimizer": "adam", "nesterov": True}, r"nesterov=true needs optimizer 'sgd'"),
        ({"colour": "red"}, r"unknown recipe field 'colour'"),
    ],
)
def test_bad_fields_raise_naming_the_field_and_value(changes, match):
    with pytest.raises(RecipeError, match=match):
        get_recipe("cifar").replace(**changes)


def test_recipes_are_frozen_and_keyword_only():
    r = get_recipe("cifar")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Recipe("x", 3)  # type: ignore[misc]


def test_unknown_recipe_lists_the_valid_names():
    with pytest.raises(RecipeError, match=r"unknown recipe 'resnet'; valid recipes: cifar, "):
        get_recipe("resnet")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_round_trip_through_json(name):
    r = RECIPES[name]
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("epochs", "7", 7),
        ("lr", "0.1", 0.1),
        ("lr", "1e-3", 1e-3),
        ("milestones", "30,60,90", (30, 60, 90)),
        ("milestones", "", ()),
        ("nesterov", "yes", True),
        ("nesterov", "false", False),
        ("resolution", "none", None),
        ("resolution", "64", 64),
        ("linearconv_lambda", "0", 0.0),
        ("schedule", "cosine", "cosine"),
    ],
)
def test_parse_field_turns_command_line_text_into_typed_values(field, text, value):
    assert parse_field(field, text) == value


@pytest.mark.parametrize(
    ("field", "text", "match"),
    [
        ("epochs", "ten", r"epochs must be an integer, got 'ten'"),
        ("epochs", "0", r"epochs must be an integer >= 1, got 0"),
        ("lr", "fast", r"lr must be a number, got 'fast'"),
        ("milestones", "100;150", r"milestones must be comma-separated integers"),
        ("nesterov", "maybe", r"nesterov must be true or false"),
        ("batchsize", "3", r"unknown recipe field 'batchsize'"),
    ],
)
def test_parse_field_rejects_bad_text(field, text, match):
    with pytest.raises(RecipeError, match=match):
        parse_field(field, text)


def test_every_field_except_the_name_is_overridable():
    names = {f.name for f in dataclasses.fields(Recipe)}
    assert set(recipe_fields()) == names - {"name"}


def test_precedence_is_recipe_then_file_then_overrides(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"recipe": "imagenet", "epochs": 7, "lr": 0.2, "milestones": [3]}))
    r = resolve_recipe(config_file=cfg, overrides={"lr": 0.3})
    assert r.name == "imagenet"  # named by the file
    assert (r.epochs, r.lr, r.milestones) == (7, 0.3, (3,))  # file, then the flag wins
    assert r.weight_decay == 1e-4  # untouched fields keep the recipe's value
    # An explicit name beats the file's.
    assert resolve_recipe("cifar", config_file=cfg).name == "cifar"
    # No name anywhere: the default.
    assert resolve_recipe(default="imagenet").name == "imagenet"


def test_toml_config_files_are_read(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('recipe = "cifar-cosine"\nepochs = 12\nmilestones = [4, 8]\nnesterov = true\n')
    r = resolve_recipe(config_file=cfg)
    assert (r.name, r.epochs, r.milestones, r.nesterov) == ("cifar-cosine", 12, (4, 8), True)


def test_a_resolved_retrain_config_is_accepted_as_a_config_file(tmp_path):
    resolved = {"format": "convnas.retrain-config/1", "recipe": get_recipe("cifar").to_dict()}
    resolved["recipe"]["epochs"] = 9
    path = tmp_path / "config.json"
    path.write_text(json.dumps(resolved))
    assert load_config_file(path)["epochs"] == 9
    assert resolve_recipe(config_file=path).epochs == 9


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        (None, "missing.json", r"config file '.*missing.json' does not exist"),
        ("{not json", "bad.json", r"is not valid JSON: .* at line 1"),
        ("[1, 2]", "list.json", r"must hold an object of recipe fields"),
        ('{"epochz": 3}', "typo.json", r"unknown recipe field 'epochz'"),
        ("epochs = = 3", "bad.toml", r"is not valid TOML"),
        ('{"epochs": 0}', "zero.json", r"epochs must be an integer >= 1, got 0"),
    ],
)
def test_bad_config_files_raise_one_line_errors(tmp_path, content, name, match):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(RecipeError, match=match) as info:
        resolve_recipe(config_file=path)
    assert "\n" not in str(info.value)


def test_linearconv_defaults_are_left_to_the_operator_module():
    # None in a recipe means "the op's default", filled in when a run resolves its config.
    assert all(r.linearconv_lambda is None and r.linearconv_every is None for r in RECIPES.values())
