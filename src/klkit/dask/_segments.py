"""klkit.dask's segment functions: one task per partition of a dask
DataFrame, each handing the partition's Arrow list columns to klkit."""
import math
from functools import partial

import numpy as np

from .. import _args
from .. import segments as _segments
from .._arrays import common_dtype, result_dtype
from ._graph import float_dtype

__all__ = ["seq_kl", "segment_sum", "segment_mean", "segment_max", "segment_logsumexp"]


def _frame_modules():
    try:
        import dask.dataframe as dd
        import pandas as pd
        import pyarrow as pa
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('klkit.dask\'s DataFrame functions need dask[dataframe] and '
                          'pyarrow: pip install "klkit[dask]"') from e
    return dd, pd, pa


def _list_column(df, column, name):
    """(dask Series of Arrow lists, its value dtype as klkit computes it)."""
    dd, pd, pa = _frame_modules()
    if isinstance(df, dd.Series) and column is None:
        s = df
    elif isinstance(df, dd.DataFrame):
        if column is None:
            raise TypeError(f"{name}: give the column name of a DataFrame")
        if column not in df.columns:
            raise ValueError(f"{name}: no column {column!r} (columns: {list(df.columns)})")
        s = df[column]
    else:
        raise TypeError(f"{name}: expected a dask DataFrame (with a column name) or Series, "
                        f"got {type(df).__name__}")
    dt = s.dtype
    typ = getattr(dt, "pyarrow_dtype", None)
    if typ is None or not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise TypeError(f"{name}: column {s.name!r} has dtype {dt}; expected Arrow lists "
                        "(pandas ArrowDtype, e.g. read_parquet(..., dtype_backend='pyarrow'))")
    from .. import _arrow

    _arrow.chunks(pa.chunked_array([], type=typ), name)      # klkit's value type checks
    return s, _arrow.value_dtype(typ.value_type)


def _arrow_of(series):
    """The Arrow data of a pandas ArrowDtype Series: the ChunkedArray pandas
    holds (no copy)."""
    return series.array.__arrow_array__()


def _segment_part(part, *, fn, columns, kw, name, dtype):
    import pandas as pd

    out = np.asarray(fn(*[_arrow_of(part[c]) for c in columns], **kw), dtype=dtype)
    return pd.Series(out, index=part.index, name=name)


def _segment_graph(fn, frame, columns, kw, name, dtype):
    """fn(*the Arrow columns, **kw) per partition of the dask DataFrame
    ``frame``: a dask Series with its index."""
    _, pd, _ = _frame_modules()
    meta = pd.Series(np.empty(0, dtype), name=name, index=frame._meta.index)
    return frame.map_partitions(partial(_segment_part, fn=fn, columns=columns, kw=kw,
                                        name=name, dtype=dtype),
                                meta=meta, token=f"klkit-{fn.__name__}")


def _frame(df, columns):
    """The columns of df (a dask DataFrame, or a Series: column None) as a
    dask DataFrame and their names in it."""
    dd, _, _ = _frame_modules()
    if isinstance(df, dd.Series):
        return df.to_frame(name="values"), ["values"]
    uniq = list(dict.fromkeys(columns))
    return df[uniq], list(columns)


def _segment_reduce(fn, df, column, empty):
    empty = _args.empty(empty)
    s, vdt = _list_column(df, column, "values")
    dtype = result_dtype(float_dtype(vdt, "values"))
    frame, cols = _frame(df, [column])
    return _segment_graph(fn, frame, cols, {"empty": empty}, s.name, dtype)


def segment_sum(df, column=None, *, empty=0.0):
    """:func:`klkit.segment_sum` of each list of ``df[column]`` (an Arrow
    list column of a dask DataFrame; or a dask Series of them, column None):
    a lazy float32 / float64 dask Series with df's index and the column's
    name, one task per partition, klkit's bits.

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa, dask.dataframe as dd
    >>> import klkit.dask as kd
    >>> lists = pd.arrays.ArrowExtensionArray(pa.array([[0.5, 1.5], [], [2.0]], pa.list_(pa.float64())))
    >>> df = dd.from_pandas(pd.DataFrame({"v": lists}), npartitions=2)
    >>> kd.segment_sum(df, "v").compute().tolist()     # the empty list gives 0
    [2.0, 0.0, 2.0]
    """
    return _segment_reduce(_segments.segment_sum, df, column, empty)


def segment_mean(df, column=None, *, empty=math.nan):
    """:func:`klkit.segment_mean` of each list of ``df[column]`` (as
    :func:`segment_sum`).

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa, dask.dataframe as dd
    >>> import klkit.dask as kd
    >>> lists = pd.arrays.ArrowExtensionArray(pa.array([[0.5, 1.5], [], [2.0]], pa.list_(pa.float64())))
    >>> df = dd.from_pandas(pd.DataFrame({"v": lists}), npartitions=2)
    >>> kd.segment_mean(df, "v").compute().tolist()
    [1.0, nan, 2.0]
    """
    return _segment_reduce(_segments.segment_mean, df, column, empty)


def segment_max(df, column=None, *, empty=-math.inf):
    """:func:`klkit.segment_max` of each list of ``df[column]`` (as
    :func:`segment_sum`).

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa, dask.dataframe as dd
    >>> import klkit.dask as kd
    >>> lists = pd.arrays.ArrowExtensionArray(pa.array([[0.5, 1.5], [], [2.0]], pa.list_(pa.float64())))
    >>> df = dd.from_pandas(pd.DataFrame({"v": lists}), npartitions=2)
    >>> kd.segment_max(df, "v").compute().tolist()
    [1.5, -inf, 2.0]
    """
    return _segment_reduce(_segments.segment_max, df, column, empty)


def segment_logsumexp(df, column=None, *, empty=-math.inf):
    """:func:`klkit.segment_logsumexp` of each list of ``df[column]`` (as
    :func:`segment_sum`).

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa, dask.dataframe as dd
    >>> import klkit.dask as kd
    >>> lists = pd.arrays.ArrowExtensionArray(pa.array([[0.5, 1.5], [], [2.0]], pa.list_(pa.float64())))
    >>> df = dd.from_pandas(pd.DataFrame({"v": lists}), npartitions=2)
    >>> [round(v, 6) for v in kd.segment_logsumexp(df, "v").compute()]
    [1.813262, -inf, 2.0]
    """
    return _segment_reduce(_segments.segment_logsumexp, df, column, empty)


def seq_kl(df, logp="logp", ref="ref_logp", *, estimator="k1", reduce="sum", clamp=None,
           empty=0.0):
    """:func:`klkit.seq_kl` of the row-aligned Arrow list columns ``logp``
    and ``ref`` of a dask DataFrame: a lazy float32 / float64 dask Series
    named "seq_kl" with df's index, one task per partition, klkit's bits.
    A sequence whose two lists differ in length is a ValueError when
    computed (klkit's, numbered within its partition).

    Examples
    --------
    >>> import pandas as pd, pyarrow as pa, dask.dataframe as dd
    >>> import klkit.dask as kd
    >>> t = pa.list_(pa.float64())
    >>> cols = {"logp": pa.array([[-0.1, -2.3], [-0.5]], t), "ref_logp": pa.array([[-0.2, -2.0], [-0.4]], t)}
    >>> df = dd.from_pandas(pd.DataFrame({k: pd.arrays.ArrowExtensionArray(v) for k, v in cols.items()}), npartitions=1)
    >>> [round(v, 6) for v in kd.seq_kl(df, estimator="k3").compute()]
    [0.054696, 0.005171]
    """
    _args.estimator(estimator)
    _args.clamp(clamp)
    kw = dict(estimator=estimator, reduce=_args.reduce(reduce), clamp=clamp,
              empty=_args.empty(empty))
    dd, _, _ = _frame_modules()
    if not isinstance(df, dd.DataFrame):
        raise TypeError(f"df: expected a dask DataFrame, got {type(df).__name__}")
    _, dp = _list_column(df, logp, "logp")
    _, dq = _list_column(df, ref, "ref_logp")
    dtype = result_dtype(common_dtype((None, float_dtype(dp, "logp")),
                                      (None, float_dtype(dq, "ref_logp"))))
    frame, cols = _frame(df, [logp, ref])
    return _segment_graph(_segments.seq_kl, frame, cols, kw, "seq_kl", dtype)
