"""LeNet parameter counts, shapes and the functional split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcomp.zoo.models import LeNet5, LeNet300100, make_model, param_count
from jaxcomp.zoo.train import functional


def test_parameter_counts_match_the_thesis():
    assert param_count(LeNet300100(rngs=nnx.Rngs(0))) == 266_610
    assert param_count(LeNet5(rngs=nnx.Rngs(0))) == 431_080


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5"])
def test_functional_apply_matches_module_eager_and_jit(name):
    model = make_model(name, seed=3)
    apply, params = functional(model)
    x = jax.random.uniform(jax.random.key(0), (4, 28, 28))
    ref = model(x)
    assert ref.shape == (4, 10)
    np.testing.assert_array_equal(apply(params, x), ref)
    np.testing.assert_allclose(jax.jit(apply)(params, x), ref, rtol=1e-5, atol=1e-5)
    assert param_count(params) == param_count(model)
    # Params flow through apply: zeroing the last layer gives its bias only.
    last = "fc3" if name == "lenet-300-100" else "fc2"
    params[last]["kernel"] = jnp.zeros_like(params[last]["kernel"])
    np.testing.assert_allclose(apply(params, x), jnp.broadcast_to(params[last]["bias"], (4, 10)))


def test_make_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="model must be one of"):
        make_model("resnet")
