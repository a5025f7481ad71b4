"""What differs between Keras backends, each in one small function.

The callbacks compute through `keras.ops`; only autodiff (a gradient and a
Hessian-vector product of a pure loss function), compilation, float64 and the
`tf.distribute` replica count need the backend itself. Everything TensorFlow
is imported inside the function that needs it, so `import keras_wrs` works
under JAX and PyTorch without TensorFlow installed.
"""

from __future__ import annotations

import contextlib
import importlib.util

import keras

__all__ = [
    "backend",
    "require_tensorflow",
    "is_tf_dataset",
    "num_replicas",
    "jit",
    "read",
    "float64_scope",
    "gradient",
    "hessian_vector_product",
    "init_scope",
    "seeded_global_rng",
    "fused_base",
]

_EXTRAS = (
    "`pip install 'keras-wrs[cpu]'` (CPU only, the smaller tensorflow-cpu wheel), "
    "`pip install 'keras-wrs[gpu]'` (tensorflow with CUDA) or `pip install "
    "'keras-wrs[tf]'` (the plain tensorflow wheel)"
)


def backend() -> str:
    """The Keras backend in use, however it was chosen (env var or keras.json)."""
    return keras.backend.backend()


def require_tensorflow(feature: str = "this feature") -> None:
    """Raise an ImportError naming the extras when TensorFlow is missing.

    Args:
        feature: what needs TensorFlow, for the message (e.g. "TFDS data
            sets", "TensorBoard step series").
    """
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed (the Keras "
            f"backend is {backend()!r}). Install it with the extra that fits "
            f"your machine: {_EXTRAS}."
        )


def is_tf_dataset(obj) -> bool:
    """Whether `obj` is a `tf.data.Dataset`, without importing TensorFlow."""
    return any(
        c.__module__.startswith("tensorflow") and c.__name__.endswith("Dataset")
        for c in type(obj).__mro__
    )


def num_replicas() -> int:
    """Replicas of the current `tf.distribute` strategy (1 on other backends)."""
    if backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def jit(fn):
    """`fn` compiled for the backend: `tf.function`, `jax.jit`; PyTorch runs eagerly.

    `fn` must read model state only through its arguments: a JAX trace
    would freeze anything it reads from a variable.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if name == "jax":
        import jax

        return jax.jit(fn)
    return fn


def read(variable):
    """A variable's current value as a backend tensor, outside any autodiff graph.

    TensorFlow: a read, not the variable; PyTorch: detached from autograd
    (the storage is shared, so take `ops.copy` to keep a snapshot).
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(variable)
    if name == "torch":
        return variable.value.detach()
    return variable.value


def float64_scope(dtype: str):
    """A context in which `dtype` computes as asked (JAX needs x64 switched on)."""
    if dtype != "float64" or backend() != "jax":
        return contextlib.nullcontext()
    import jax

    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # JAX < 0.7

    return enable_x64()


def gradient(fn, values, *args):
    """Gradient of the scalar `fn(values, *args)` with respect to the list `values`.

    Returns:
        A list of tensors shaped like `values` (zeros where `fn` does not
        depend on a value).
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(values)
            loss = fn(values, *args)
        return tape.gradient(loss, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if name == "jax":
        import jax

        return jax.grad(lambda vs: fn(vs, *args))(list(values))
    if name == "torch":
        return _torch_grads(fn, values, args, None)
    raise NotImplementedError(f"keras-wrs has no gradient for the {name!r} backend.")


def hessian_vector_product(fn, values, vectors, *args):
    """`H v` for the Hessian `H` of the scalar `fn(values, *args)` in `values`.

    TensorFlow: double backprop with nested tapes; JAX: `jax.jvp` of
    `jax.grad` (forward over reverse); PyTorch: double backward.

    Returns:
        A list of tensors shaped like `values` (zeros where unconnected).

    References:
        Pearlmutter, "Fast exact multiplication by the Hessian", Neural
        Computation 6(1), 1994.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        zero = tf.UnconnectedGradients.ZERO
        with tf.GradientTape() as outer:
            outer.watch(values)
            with tf.GradientTape() as inner:
                inner.watch(values)
                loss = fn(values, *args)
            grads = inner.gradient(loss, values, unconnected_gradients=zero)
            dot = tf.add_n(
                [
                    tf.reduce_sum(g * tf.stop_gradient(v))
                    for g, v in zip(grads, vectors, strict=True)
                ]
            )
        return outer.gradient(dot, values, unconnected_gradients=zero)
    if name == "jax":
        import jax

        grad = jax.grad(lambda vs: fn(vs, *args))
        return jax.jvp(grad, (list(values),), (list(vectors),))[1]
    if name == "torch":
        return _torch_grads(fn, values, args, vectors)
    raise NotImplementedError(f"keras-wrs has no Hessian-vector product for the {name!r} backend.")


def _torch_grads(fn, values, args, vectors):
    """Gradient (`vectors` None) or `H v` (double backward) on PyTorch."""
    import torch

    with torch.enable_grad():
        vs = [v.detach().requires_grad_(True) for v in values]
        loss = fn(vs, *args)
        grads = torch.autograd.grad(loss, vs, create_graph=vectors is not None, allow_unused=True)
        if vectors is not None:
            pairs = [
                (g, u)
                for g, u in zip(grads, vectors, strict=True)
                if g is not None and g.requires_grad
            ]
            if pairs:
                dot = sum(torch.sum(g * u.detach()) for g, u in pairs)
                grads = torch.autograd.grad(dot, vs, allow_unused=True)
            else:  # the loss is linear in every value: H = 0
                grads = [None] * len(vs)
    return [
        torch.zeros_like(v) if g is None else g.detach() for g, v in zip(grads, vs, strict=True)
    ]


def init_scope():
    """Leaves any traced function (TensorFlow); other backends build eagerly."""
    if backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.init_scope()


def fused_base(optimizer_class):
    """The class Keras instantiates for `optimizer_class` on this backend.

    On PyTorch, Keras swaps its exact optimizer classes for subclasses that
    update all variables at once with fused `torch._foreach_*` kernels
    (`keras/src/backend/torch/optimizers`); subclasses of Keras's classes do
    not get the swap. Deriving from the swapped class keeps the fused path.
    """
    if backend() != "torch":
        return optimizer_class
    return type(optimizer_class.__new__(optimizer_class))


def seeded_global_rng(seed: int):
    """A context where the backend's global random generator starts at `seed`, restored after.

    Keras layers draw their noise from seed variables, which a stateless call
    passes in, except Dropout without a seed on PyTorch, which draws from
    torch's global generator: this makes two passes draw the same masks.
    """
    if backend() != "torch":
        return contextlib.nullcontext()
    import torch

    @contextlib.contextmanager
    def scope():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return scope()
