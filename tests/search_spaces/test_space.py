import random

import pytest

from search_spaces.arch import OpSpec
from search_spaces.space import SearchSpace, parse_menu


def test_menu_grid_expands_in_order_without_duplicates():
    specs = parse_menu("conv,oct(a=0.25|0.5),linear(a=0.5,rank=full|4),oct(a=0.5)")
    assert [s.label for s in specs] == [
        "conv",
        "oct(a=0.25)",
        "oct(a=0.5)",
        "linear(a=0.5,rank=full)",
        "linear(a=0.5,rank=4)",
    ]


def test_bare_entry_takes_default_grid():
    labels = [s.label for s in parse_menu("scconv")]
    assert labels == ["scconv(a=0.25,r=2,g=2)", "scconv(a=0.5,r=2,g=2)"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv,deform", r"unknown operator 'deform' in menu; allowed: conv, scconv, oct, linear"),
        ("oct(b=0.5)", r"bad parameter 'b=0.5' for oct; allowed: alpha"),
        ("oct(a=x)", r"parameter value 'x'"),
        ("conv,,oct", "empty entry"),
        ("oct(a=0.5", "missing '\\)'"),
        (
            "oct(a=1.5)",
            r"operator menu entry 'oct\(a=1.5\)': alpha must be a number in \[0, 1\) \(the share",
        ),
        (
            "conv,scconv(a=0.5,r=0)",
            r"entry 'scconv\(a=0.5,r=0\)': r must be an integer >= 1 \(the squeeze ratio\), got 0$",
        ),
    ],
)
def test_bad_menus_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_menu(text)


def test_each_slot_is_one_categorical_of_the_ops_that_fit():
    space = SearchSpace(
        "cifar_resnet20", num_classes=10, resolution=32, menu="conv,scconv(a=0.5,r=2,g=2)"
    )
    # 18 3x3 convs + 2 projection shortcuts; SCConv only fits the 3x3 ones
    assert len(space.choices) == 20
    one_by_one = [p for p in space.choices if "downsample" in p]
    assert len(one_by_one) == 2
    for p, c in space.choices.items():
        assert c == (("conv",) if p in one_by_one else ("conv", "scconv(a=0.5,r=2,g=2)"))
    assert space.size == 2**18


def test_sampling_is_seeded_and_round_trips_through_labels():
    space = SearchSpace("cifar_resnet20")
    a = space.sample(random.Random(7))
    assert a == space.sample(random.Random(7))
    assert space.to_architecture(space.labels_of(a)) == a
    many = {space.sample(random.Random(s)).arch_id for s in range(20)}
    assert len(many) == 20


def test_bad_labels_are_refused():
    space = SearchSpace("cifar_resnet20", menu="conv,oct(a=0.5)")
    labels = {p: "conv" for p in space.choices}
    labels["layer1.0.conv1"] = "oct(a=0.25)"
    with pytest.raises(
        ValueError, match=r"slot 'layer1.0.conv1': choice 'oct\(a=0.25\)' is not one"
    ):
        space.to_architecture(labels)


def test_uniform_uses_conv_where_op_does_not_fit():
    space = SearchSpace("cifar_resnet20", menu="conv,scconv(a=0.5,r=2,g=2)")
    arch = space.uniform("scconv(a=0.5,r=2,g=2)")
    assert arch.ops["layer2.0.downsample.0"] == OpSpec.make("conv")
    assert arch.ops["layer2.0.conv1"].op == "scconv"
