"""``device="auto"`` for skorch nets: one parameter value, one concrete device inside skorch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._runtime import resolve_device

__all__ = ["AutoDeviceMixin"]


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


class AutoDeviceMixin:
    """Lets a skorch ``NeuralNet`` take ``device="auto"`` (CUDA when available, else the CPU).

    ``"auto"`` is a parameter value and must stay what ``get_params`` returns (clone, grid
    search, pickles moved between machines), but skorch moves modules and targets with
    ``.to(self.device)``. :meth:`_concrete_device` shows skorch the resolved device while it
    builds or loads; ``device_`` keeps it afterwards. Put the mixin before ``NeuralNet`` in
    the bases.
    """

    @contextlib.contextmanager
    def _concrete_device(self) -> Iterator[None]:
        """Inside the block ``self.device`` is the concrete device; ``device_`` keeps it after."""
        requested = self.device
        resolved = resolve_device(requested)
        self.device_ = resolved
        if not _is_auto(requested):
            yield
            return
        self.__dict__["device"] = resolved
        try:
            yield
        finally:
            if self.__dict__.get("device") == resolved:  # unless set_params changed it
                self.__dict__["device"] = requested

    def initialize(self) -> Any:
        with self._concrete_device():
            return super().initialize()  # type: ignore[misc]

    def set_params(self, **params: Any) -> Any:
        if not self.initialized_:
            return super().set_params(**params)  # type: ignore[misc]
        with self._concrete_device():  # may re-initialise the module on the device
            out = super().set_params(**params)  # type: ignore[misc]
            if "device" in params:
                # An explicit device wins, even when it equals what "auto" resolved to: the
                # block must not turn it back into "auto" on the way out.
                self.__dict__["_explicit_device"] = params["device"]
        explicit = self.__dict__.pop("_explicit_device", None)
        if explicit is not None:
            self.__dict__["device"] = explicit
            self.device_ = resolve_device(explicit)
        return out

    def load_params(self, *args: Any, **kwargs: Any) -> None:
        with self._concrete_device():
            super().load_params(*args, **kwargs)  # type: ignore[misc]

    def __setstate__(self, state: dict[str, Any]) -> None:
        # skorch maps the tensors to state["device"], falling back to the CPU when CUDA is
        # missing. "auto" means "whatever this machine has", decided here, quietly.
        requested = state.get("device")
        if _is_auto(requested):
            state["device"] = resolve_device("auto")
        super().__setstate__(state)  # type: ignore[misc]
        self.device_ = str(self.device)
        if _is_auto(requested):
            self.__dict__["device"] = requested
