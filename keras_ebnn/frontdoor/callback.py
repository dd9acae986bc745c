"""`EbnnExport`: a Keras callback that exports the model being trained as C (ModelCheckpoint-style).

Under a tf.distribute strategy the export never runs inside the strategy: the weights are read out to
NumPy, and a plain copy of the model (built in a helper thread, where no strategy is active) is what
gets lowered, verified and exported. Calling the training model's layers from a callback would issue
collective ops (sync-on-read batch-norm statistics, variable creation) that the other workers of a
MultiWorkerMirroredStrategy never match: that aborts their collectives and kills training.
"""
import logging
import math
import threading

import numpy as np

from .._tf import import_tf
from ..errors import UnsupportedModelError

tf = import_tf()
log = logging.getLogger("keras_ebnn")


def is_chief(strategy=None):
    """True on the worker that should write files under a tf.distribute strategy.

    Single-worker strategies (default, MirroredStrategy) always are. For multi-worker strategies the
    chief is the task of type "chief", or worker 0 when the cluster has no chief task.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return True
    task_id = getattr(resolver, "task_id", 0) or 0
    if task_type == "chief":
        return True
    try:
        jobs = resolver.cluster_spec().as_dict()
    except Exception:  # pragma: no cover - unusual resolvers
        jobs = {}
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


class EbnnExport(tf.keras.callbacks.Callback):
    """Export the model as C (or a Zephyr module / Arduino library) during `model.fit`.

    Arguments follow `tf.keras.callbacks.ModelCheckpoint`:
      output_dir:     folder to write (replaced atomically at each export).
      name:           C name prefix of the generated API (`NAME_predict`).
      target:         "c", "zephyr" or "arduino".
      monitor, mode:  the metric deciding "best" (default "val_loss" when save_best_only, else unused)
                      and "min" / "max" / "auto".
      save_best_only: export whenever the monitored metric improves (at epoch end); otherwise export
                      once, at the end of training, the final weights.
      verify:         after each export, run the exported model against Keras on `verify_data`
                      (reference executor, and the compiled C when a C compiler is present) and log
                      the agreement (also written into the report).
      verify_data:    x or (x, y) for verification and the report's accuracy; without it, 256
                      random inputs in the model's input range are used (agreement only).
      reestimate_bn:  x data on which to re-estimate batch-norm statistics before exporting (the
                      training model itself is left untouched: a copy is re-estimated), or None.
      max_ram, max_flash: byte budgets; an export that does not fit is logged as an error and skipped.
      board, force:   a board name of `keras_ebnn.planning.boards` (checked at construction): each export must
                      fit it (flash and SRAM incl. stack and input), else it is logged and skipped, or
                      with force=True written with a warning (see `keras_ebnn.frontdoor.exporting.export`).
      float_weights:  "float32" (default) or "int8": weights of full-precision conv / dense layers
                      (see `keras_ebnn.frontdoor.exporting.export`).
      quantize, representative_data:  quantize="int8" with representative inputs (as the model takes
                      them): integer-only C (see `keras_ebnn.frontdoor.exporting.export`); checked at construction.
    An export that fails (budget overrun, I/O error, any exception) is logged on one line and recorded
    in `errors`; it is never raised into `fit`: training goes on and the previous export, if any, stays
    in place.
    The model is lowered at `on_train_begin` (on every worker, from each worker's own copy of the
    weights, without communication): an unsupported model raises `UnsupportedModelError` before any
    training time is spent.
    tf.distribute: at each export every worker reads the weights with `model.get_weights()` (the one
    collective step: batch-norm statistics are averaged over the replicas, as `model.save` does; the
    workers reach it together because the export decision depends only on the synchronised logs).
    Then only the chief (task "chief", or worker 0 without one) lowers, verifies and writes, on a
    strategy-free copy of the model; the other workers go straight on training and write nothing.
    So, as with ModelCheckpoint, pass the callback to `fit` on every worker, with the same arguments.
    """

    def __init__(self, output_dir, name="model", target="c", monitor=None, mode="auto",
                 save_best_only=False, verify=True, verify_data=None, reestimate_bn=None,
                 max_ram=None, max_flash=None, board=None, force=False, verbose=1, float_weights="float32",
                 quantize=None, representative_data=None):
        super().__init__()
        from .exporting import _check_quantize
        _check_quantize(quantize, representative_data, float_weights, target)  # ValueError before training
        self.quantize, self.representative_data = quantize, representative_data
        if float_weights not in ("float32", "int8"):
            raise ValueError(f"float_weights must be 'float32' or 'int8', not {float_weights!r}")
        self.float_weights = float_weights
        from .exporting import check_board
        check_board(board, target)  # BoardError (a ValueError) for an unknown or unsuitable board
        self.board, self.force = board, force
        if target not in ("c", "zephyr", "arduino"):
            raise ValueError(f"target must be 'c', 'zephyr' or 'arduino', not {target!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', not {mode!r}")
        self.output_dir = str(output_dir)
        self.name = name
        self.target = target
        self.save_best_only = save_best_only
        self.monitor = monitor or ("val_loss" if save_best_only else None)
        if mode == "auto":
            mode = "max" if self.monitor and ("acc" in self.monitor or self.monitor.startswith("fmeasure")) else "min"
        self.mode = mode
        self.best = math.inf if mode == "min" else -math.inf
        self.verify = verify
        self.verify_data = verify_data
        self.reestimate_bn = reestimate_bn
        self.max_ram, self.max_flash = max_ram, max_flash
        self.verbose = verbose
        self.exports = []  # ExportResult of every export made, in order
        self.errors = []  # exceptions of exports that failed (training goes on; nothing is written)
        self.best_epoch = None

    # -- Keras hooks ---------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        weights = local_weights(self.model)  # no collective op: every worker checks on its own
        try:
            from .exporting import lower_for_export  # chain of blocks, else graph: what export() takes
            outside_strategy(lambda: lower_for_export(plain_copy(self.model, weights), self.name))
        except UnsupportedModelError as exc:
            self.model.stop_training = True
            raise UnsupportedModelError(f"EbnnExport cannot export this model: {exc.message}",
                                        supported=exc.hint) from exc
        _validate_name(self.name)

    def on_epoch_end(self, epoch, logs=None):
        if not self.save_best_only:
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            log.warning("EbnnExport: metric %r is not available (have: %s); skipping export",
                        self.monitor, ", ".join(sorted(logs or {})))
            return
        better = value < self.best if self.mode == "min" else value > self.best
        if better:
            if self._chief():
                self._say(f"epoch {epoch + 1}: {self.monitor} improved from {self.best:.5g} to "
                          f"{value:.5g}, exporting to {self.output_dir}")
            self.best, self.best_epoch = value, epoch
            self._export(epoch)

    def on_train_end(self, logs=None):
        if not self.save_best_only:
            self._export(None)

    # -- helpers -------------------------------------------------------------------------------
    def _say(self, msg):
        if self.verbose:
            print(f"EbnnExport: {msg}")
        log.info(msg)

    def _chief(self):
        return is_chief(getattr(self.model, "distribute_strategy", None))

    def _export(self, epoch):
        """Export the current weights (chief only); return the ExportResult, or None. Never raises."""
        try:
            # every worker, at the same point: the only step that may communicate (see class docstring)
            weights = self.model.get_weights()
            if not self._chief():
                return None
            result = outside_strategy(self._export_copy, weights)
        except Exception as exc:  # budget overrun, disk full, C mismatch...: report, keep training
            from .exporting import BudgetError
            kind = "" if isinstance(exc, BudgetError) else f"{type(exc).__name__}: "
            text = getattr(exc, "message", exc)  # UnsupportedModelError: without the supported-layers list
            msg = "not exported: " + " ".join(f"{kind}{text}".split())  # one line
            print(f"EbnnExport: {msg}")
            if log.hasHandlers():  # else logging's last resort would print it a second time
                log.error("EbnnExport: %s", msg)
            self.errors.append(exc)
            return None
        result.epoch = epoch
        self.exports.append(result)
        self._say(result.summary())
        return result

    def _export_copy(self, weights):
        """Lower, verify and write a strategy-free copy of the model holding `weights`."""
        from .exporting import export
        model = plain_copy(self.model, weights)
        if self.reestimate_bn is not None:
            from ..train.training import reestimate_batchnorm
            reestimate_batchnorm(model, self.reestimate_bn)
        x, y = _split(self.verify_data)
        if x is None and self.verify:
            x = random_inputs(model, 256)
        return export(model, self.output_dir, name=self.name, target=self.target,
                      verify_inputs=x if self.verify else None,
                      verify_labels=y if self.verify else None,
                      max_ram=self.max_ram, max_flash=self.max_flash, board=self.board, force=self.force,
                      float_weights=self.float_weights, quantize=self.quantize,
                      representative_data=self.representative_data,
                      # random verification inputs are no sample images for the Arduino sketch
                      sketch_verify_inputs=self.verify_data is not None)


def local_weights(model):
    """The model's weights as NumPy arrays (in `get_weights()` order), read without any communication.

    A distributed variable gives its first local replica's value: for mirrored variables that is the
    value; for sync-on-read ones (batch-norm moving statistics) it is this replica's own estimate,
    where `get_weights()` would average all replicas with a collective op.
    """
    strategy = model.distribute_strategy
    return [np.asarray(strategy.experimental_local_results(v)[0]) for v in model.weights]


def plain_copy(model, weights):
    """A copy of `model` (same architecture and layer names, `weights` set) that belongs to no strategy.

    Call it where no tf.distribute strategy is active (see `outside_strategy`): built inside a
    strategy's scope, the copy's variables would be distributed again, and under a multi-worker
    strategy creating them is itself a collective op.
    """
    if not isinstance(model, tf.keras.Model):
        raise UnsupportedModelError(f"expected a tf.keras Model, got {type(model).__name__}")
    if not (isinstance(model, tf.keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedModelError(f"subclassed model {type(model).__name__} is not supported.",
                                    hint="Build a Sequential or functional model of Keras and larq layers.")
    try:
        copy = tf.keras.models.clone_model(model)
        copy.set_weights(weights)
    except Exception as exc:
        raise UnsupportedModelError(
            f"the model cannot be rebuilt from its layers' configuration ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}).",
            hint="Use a built Sequential or functional model of Keras and larq layers.") from exc
    return copy


def outside_strategy(fn, *args):
    """Return fn(*args), run where no tf.distribute strategy is active.

    A strategy's scope belongs to the thread that entered it, so under a strategy `fn` runs in a
    helper thread (joined at once: the caller waits); its exception, if any, is raised here.
    """
    if not tf.distribute.has_strategy():
        return fn(*args)
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="ebnn-export")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _split(data):
    if data is None:
        return None, None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1])
    return np.asarray(data), None


def random_inputs(model, n, seed=0):
    """Random inputs in the model's input range (uint8 values when it starts with Rescaling)."""
    from .exporting import lower_for_export
    lowered = lower_for_export(model)
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(int(d) for d in model.input_shape[1:])  # Keras's shape: (18,), not the chain's (1, 1, 18)
    if lowered.input.dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.normal(0, 1, shape).astype(np.float32)


def _validate_name(name):
    if not (name.isidentifier() and name.isascii()):
        raise ValueError(f"name {name!r} must be a C identifier (letters, digits, underscore)")
