# SPDX-License-Identifier: MIT
"""ctypes declarations of include/xfer_weightsync.h and include/xfer_ws_exec.h,
one to one. Nothing here is public: xfer.weightsync wraps it."""

from __future__ import annotations

from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_int, c_int32, c_size_t,
                    c_uint32, c_uint64, c_void_p)

from ._lib import _fn, P, PP

DT_BF16, DT_F32, DT_FP8E4M3 = 1, 2, 3
FP8_BLOCK = 128
NAME_MAX = 96
XF_COPY, XF_FP8 = 0, 1
MODEL_MTP = 1 << 0
EXEC_STAGE_ALL = 1
IMM_DATA, IMM_BARRIER, IMM_GATHER = 0x57530001, 0x57530002, 0x57530003


class Param(Structure):
    _fields_ = [("name", c_char * NAME_MAX), ("rows", c_uint64), ("cols", c_uint64),
                ("ndim", c_uint32), ("dtype", c_uint32), ("layer", c_int32), ("expert", c_int32)]


class TrainerLayout(Structure):
    _fields_ = [("size", c_uint32), ("dp", c_uint32), ("pp", c_uint32), ("fsdp", c_uint32),
                ("ep", c_uint32)]


class InferLayout(Structure):
    _fields_ = [("size", c_uint32), ("dp", c_uint32), ("ep", c_uint32), ("tp", c_uint32),
                ("dtype", c_uint32)]


class Tensor(Structure):
    _fields_ = [("offset", c_uint64), ("bytes", c_uint64), ("scale_offset", c_uint64),
                ("scale_bytes", c_uint64), ("rows", c_uint64), ("cols", c_uint64),
                ("rank", c_uint32), ("dtype", c_uint32), ("name", c_uint32), ("pad", c_uint32)]


class Chunk(Structure):
    _fields_ = [("out_bytes", c_uint64), ("scale_bytes", c_uint64), ("gather_offset", c_uint64),
                ("row0", c_uint64), ("rows", c_uint64), ("col0", c_uint64), ("cols", c_uint64),
                ("owner", c_uint32), ("param", c_uint32), ("transform", c_uint32),
                ("tensor", c_uint32), ("first_write", c_uint32), ("nwrites", c_uint32),
                ("first_gather", c_uint32), ("ngathers", c_uint32)]


class Write(Structure):
    _fields_ = [("dst_offset", c_uint64), ("scale_offset", c_uint64), ("chunk", c_uint32),
                ("dst_rank", c_uint32)]


class TrainerRank(Structure):
    _fields_ = [("first_chunk", c_uint32), ("nchunks", c_uint32), ("first_write", c_uint32),
                ("nwrites", c_uint32), ("first_gather", c_uint32), ("ngathers", c_uint32),
                ("peak_staging", c_uint64), ("gather_bytes", c_uint64), ("tx_bytes", c_uint64),
                ("rx_bytes", c_uint64)]


class InferRank(Structure):
    _fields_ = [("first_tensor", c_uint32), ("ntensors", c_uint32), ("buf_bytes", c_uint64),
                ("rx_bytes", c_uint64)]


class Schedule(Structure):
    _fields_ = [("version", c_uint32), ("align", c_uint32), ("trainer", TrainerLayout),
                ("infer", InferLayout), ("ntrainers", c_uint32), ("ninfer", c_uint32),
                ("nlayers", c_uint32), ("nexperts", c_uint32), ("nparams", c_uint64),
                ("ntensors", c_uint64), ("nchunks", c_uint64), ("nwrites", c_uint64),
                ("ngathers", c_uint64), ("strtab_len", c_uint64), ("params", POINTER(Param)),
                ("tensors", POINTER(Tensor)), ("chunks", POINTER(Chunk)),
                ("writes", POINTER(Write)), ("writes_by_chunk", POINTER(c_uint32)),
                ("gathers", c_void_p), ("gathers_by_chunk", POINTER(c_uint32)),
                ("trainers", POINTER(TrainerRank)), ("infers", POINTER(InferRank)),
                ("strtab", c_void_p)]


class PlanAttr(Structure):
    _fields_ = [("size", c_uint32), ("flags", c_uint32), ("min_chunk", c_uint64),
                ("max_chunk", c_uint64), ("align", c_uint32), ("reserved", c_uint32)]


class ExecAttr(Structure):
    _fields_ = [("size", c_uint32), ("window", c_uint32), ("watermark", c_uint64),
                ("timeout_ms", c_int32), ("flags", c_uint32), ("threads", c_uint32)]


class TrainerIO(Structure):
    _fields_ = [("size", c_uint32), ("rank", c_uint32), ("e", c_void_p),
                ("shard", POINTER(c_void_p)), ("src_mr", c_void_p), ("gather_buf", c_void_p),
                ("gather_mr", c_void_p), ("infer_buf", POINTER(c_void_p)),
                ("trainer_gather", POINTER(c_void_p)), ("infer_peer", POINTER(c_uint32))]


class ExecStats(Structure):
    _fields_ = [("seconds", c_double), ("bytes_written", c_uint64), ("bytes_gathered", c_uint64),
                ("writes", c_uint64), ("peak_staging", c_uint64), ("bytes_staged", c_uint64),
                ("gather_s", c_double), ("prepare_s", c_double), ("wait_s", c_double)]


dtype_size = _fn("xfer_ws_dtype_size", c_uint32, c_uint32)
dtype_name = _fn("xfer_ws_dtype_name", c_char_p, c_uint32)
model_load = _fn("xfer_ws_model_load", c_int, c_char_p, c_uint32, PP)
model_parse = _fn("xfer_ws_model_parse", c_int, c_char_p, c_uint32, PP)
model_free = _fn("xfer_ws_model_free", None, P)
last_error = _fn("xfer_ws_last_error", c_char_p)
trainer_parse_size = _fn("xfer_ws_trainer_parse_size", c_int, c_char_p, POINTER(TrainerLayout),
                         c_size_t)
infer_parse_size = _fn("xfer_ws_infer_parse_size", c_int, c_char_p, POINTER(InferLayout),
                       c_size_t)
plan = _fn("xfer_ws_plan", c_int, P, POINTER(TrainerLayout), POINTER(InferLayout),
           POINTER(PlanAttr), POINTER(POINTER(Schedule)))
schedule_free = _fn("xfer_ws_schedule_free", None, POINTER(Schedule))
shard_rows = _fn("xfer_ws_shard_rows", c_int, POINTER(Schedule), c_uint32, c_uint32,
                 POINTER(c_uint64), POINTER(c_uint64))
schedule_validate = _fn("xfer_ws_schedule_validate", c_int, POINTER(Schedule), c_char_p, c_size_t)
trainer_exec_create = _fn("xfer_ws_trainer_exec_create", c_int, POINTER(Schedule),
                          POINTER(TrainerIO), POINTER(ExecAttr), PP)
trainer_exec_step = _fn("xfer_ws_trainer_exec_step", c_int, P, POINTER(ExecStats))
trainer_exec_destroy = _fn("xfer_ws_trainer_exec_destroy", None, P)
exec_expected = _fn("xfer_ws_exec_expected", c_uint64, POINTER(Schedule), c_uint32)
exec_receive = _fn("xfer_ws_exec_receive", c_int, POINTER(Schedule), P, c_uint32, c_int)
chunk_transform = _fn("xfer_ws_chunk_transform", None, POINTER(Schedule), POINTER(Chunk), P,
                      c_uint64, P, P)
