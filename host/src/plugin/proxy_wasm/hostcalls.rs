//! The host functions a Proxy-Wasm module imports: module `env` (the ABI)
//! and the minimal `wasi_snapshot_preview1` a `wasm32-wasip1` build needs,
//! with no files, network, arguments or environment (stdout and stderr go
//! to the gateway log).
//!
//! Statuses follow `docs/proxy-wasm-abi.md`: a call the host does not
//! support is logged once per plugin and answers with a status the Rust SDK
//! tolerates (it panics on `UNIMPLEMENTED`); a guest pointer out of bounds
//! traps the call.

use super::abi::{self, errno, status, Buffer, Map, MetricKind, Pairs};
use super::context::{header, PendingCall, Stream};
use super::instance::{FilterState, ROOT_ID};
use super::shared;
use crate::plugin::bindings::{LogLevel, Response};
use crate::plugin::bounds::{self, CallBudget};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Linker};

type Result<T> = wasmtime::Result<T>;
type Ctx<'a> = Caller<'a, FilterState>;

/// Every import this module defines; any other import of `env` or
/// `wasi_snapshot_preview1` gets a logged stub (see [`stub`]).
pub const DEFINED: &[(&str, &str)] = &[
    ("env", "proxy_log"),
    ("env", "proxy_get_log_level"),
    ("env", "proxy_get_current_time_nanoseconds"),
    ("env", "proxy_set_tick_period_milliseconds"),
    ("env", "proxy_get_buffer_bytes"),
    ("env", "proxy_set_buffer_bytes"),
    ("env", "proxy_get_buffer_status"),
    ("env", "proxy_get_header_map_pairs"),
    ("env", "proxy_set_header_map_pairs"),
    ("env", "proxy_get_header_map_value"),
    ("env", "proxy_add_header_map_value"),
    ("env", "proxy_replace_header_map_value"),
    ("env", "proxy_remove_header_map_value"),
    ("env", "proxy_get_header_map_size"),
    ("env", "proxy_get_property"),
    ("env", "proxy_set_property"),
    ("env", "proxy_get_shared_data"),
    ("env", "proxy_set_shared_data"),
    ("env", "proxy_register_shared_queue"),
    ("env", "proxy_resolve_shared_queue"),
    ("env", "proxy_enqueue_shared_queue"),
    ("env", "proxy_dequeue_shared_queue"),
    ("env", "proxy_continue_stream"),
    ("env", "proxy_close_stream"),
    ("env", "proxy_send_local_response"),
    ("env", "proxy_http_call"),
    ("env", "proxy_grpc_call"),
    ("env", "proxy_grpc_stream"),
    ("env", "proxy_grpc_send"),
    ("env", "proxy_grpc_cancel"),
    ("env", "proxy_grpc_close"),
    ("env", "proxy_get_status"),
    ("env", "proxy_set_effective_context"),
    ("env", "proxy_call_foreign_function"),
    ("env", "proxy_done"),
    ("env", "proxy_define_metric"),
    ("env", "proxy_increment_metric"),
    ("env", "proxy_record_metric"),
    ("env", "proxy_get_metric"),
    ("wasi_snapshot_preview1", "fd_write"),
    ("wasi_snapshot_preview1", "environ_get"),
    ("wasi_snapshot_preview1", "environ_sizes_get"),
    ("wasi_snapshot_preview1", "args_get"),
    ("wasi_snapshot_preview1", "args_sizes_get"),
    ("wasi_snapshot_preview1", "proc_exit"),
    ("wasi_snapshot_preview1", "clock_time_get"),
    ("wasi_snapshot_preview1", "random_get"),
    ("wasi_snapshot_preview1", "sched_yield"),
];

// ---- guest memory ---------------------------------------------------------

fn memory(caller: &Ctx<'_>) -> Result<wasmtime::Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| wasmtime::format_err!("the filter's memory is not known yet"))
}

/// `len` bytes at `ptr`; out of bounds traps.
fn read(caller: &Ctx<'_>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    memory(caller)?
        .data(caller)
        .get(ptr..ptr.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| wasmtime::format_err!("guest pointer out of bounds ({ptr}+{len})"))
}

fn read_str(caller: &Ctx<'_>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    memory
        .write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| wasmtime::format_err!("guest pointer out of bounds ({ptr})"))
}

fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the guest: allocated with its `proxy_on_memory_allocate`
/// (exactly `len` bytes, which the SDK frees), pointer and size written at
/// the two out-pointers; empty is pointer 0, size 0, nothing allocated.
async fn hand_back(caller: &mut Ctx<'_>, bytes: &[u8], ptr_out: i32, size_out: i32) -> Result<()> {
    if bytes.is_empty() {
        write_u32(caller, ptr_out, 0)?;
        return write_u32(caller, size_out, 0);
    }
    let allocate = caller
        .data()
        .allocate
        .clone()
        .ok_or_else(|| wasmtime::format_err!("the filter exports no allocator"))?;
    let at = allocate
        .call_async(&mut *caller, bytes.len() as i32)
        .await?;
    if at == 0 {
        return Err(wasmtime::format_err!(
            "proxy_on_memory_allocate({}) failed",
            bytes.len()
        ));
    }
    write(caller, at, bytes)?;
    write_u32(caller, ptr_out, at as u32)?;
    write_u32(caller, size_out, bytes.len() as u32)
}

/// Logs a call the host does not support, once per plugin and call.
fn unsupported(caller: &Ctx<'_>, call: &str, why: &str) {
    let entry = &caller.data().entry;
    if entry.first_unsupported(call) {
        tracing::warn!(
            plugin = &*entry.plugin,
            route = &*entry.route,
            call,
            "proxy-wasm: unsupported call ({why}); logged once"
        );
    }
}

fn stream<'a>(caller: &'a mut Ctx<'_>) -> Option<&'a mut Stream> {
    caller.data_mut().stream.as_mut()
}

/// The header map `map` names, while it is readable.
fn map_of(stream: &mut Stream, map: Map) -> Option<&mut Pairs> {
    match map {
        Map::RequestHeaders => Some(&mut stream.request_headers),
        Map::ResponseHeaders if !stream.response_headers.is_empty() => {
            Some(&mut stream.response_headers)
        }
        Map::CallResponseHeaders => stream.call_response.as_mut().map(|c| &mut c.headers),
        Map::RequestTrailers => Some(&mut stream.request_trailers),
        Map::ResponseTrailers => Some(&mut stream.response_trailers),
        _ => None,
    }
}

/// Links every host function into `linker`.
pub fn add_to_linker(linker: &mut Linker<FilterState>) -> Result<()> {
    add_env(linker)?;
    add_wasi(linker)
}

/// A stub for an import no SDK we know of uses, typed as the module
/// declares it: logs once and answers `UNIMPLEMENTED` (`env`) or `NOSYS`
/// (WASI) when it returns an `i32`.
pub fn stub(
    linker: &mut Linker<FilterState>,
    module: &str,
    name: &str,
    ty: wasmtime::FuncType,
) -> Result<()> {
    let answer = if module == "env" {
        status::UNIMPLEMENTED
    } else {
        errno::NOSYS
    };
    let call = format!("{module}::{name}");
    linker.func_new(module, name, ty, move |caller, _params, results| {
        unsupported(&caller, &call, "not implemented by wasmgate");
        for result in results.iter_mut() {
            *result = match result {
                wasmtime::Val::I64(_) => wasmtime::Val::I64(answer.into()),
                _ => wasmtime::Val::I32(answer),
            };
        }
        Ok(())
    })?;
    Ok(())
}

fn add_env(linker: &mut Linker<FilterState>) -> Result<()> {
    // ---- logging, time, timers ----
    linker.func_wrap(
        "env",
        "proxy_log",
        |caller: Ctx<'_>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let mut message = read_str(&caller, ptr, len)?;
            let state = caller.data();
            let level = match level {
                0 => LogLevel::Trace,
                1 => LogLevel::Debug,
                2 => LogLevel::Info,
                3 => LogLevel::Warn,
                _ => LogLevel::Error,
            };
            bounds::truncate(&mut message, bounds::MAX_LOG_MESSAGE_BYTES);
            let entry = state.entry.clone();
            let mut caller = caller;
            if CallBudget::take(&mut caller.data_mut().budget.log_lines) {
                entry
                    .services
                    .telemetry
                    .log(&entry.plugin, &entry.route, level, &message, &[]);
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Ctx<'_>, out: i32| -> Result<i32> {
            write_u32(&mut caller, out, 0)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Ctx<'_>, out: i32| -> Result<i32> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            write(&mut caller, out, &now.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Ctx<'_>, ms: i32| -> Result<i32> {
            let ms = ms as u32;
            caller.data_mut().tick_period =
                (ms > 0).then(|| std::time::Duration::from_millis(ms.into()));
            Ok(status::OK)
        },
    )?;

    // ---- buffers ----
    linker.func_wrap_async(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Ctx<'_>, (kind, start, max, ptr_out, size_out): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let Some(kind) = Buffer::from_abi(kind) else {
                    return Ok(status::BAD_ARGUMENT);
                };
                let bytes = {
                    let state = caller.data();
                    let stream = state.stream.as_ref();
                    let buffer: Option<&[u8]> = match kind {
                        Buffer::PluginConfiguration => Some(&state.entry.config),
                        Buffer::VmConfiguration => Some(&[]),
                        Buffer::RequestBody => stream.and_then(|s| s.request_body.as_deref()),
                        Buffer::ResponseBody => stream.and_then(|s| s.response_body.as_deref()),
                        Buffer::CallResponseBody => stream
                            .and_then(|s| s.call_response.as_ref())
                            .map(|c| c.body.as_slice()),
                        Buffer::Other => None,
                    };
                    let Some(buffer) = buffer else {
                        return Ok(status::NOT_FOUND);
                    };
                    let start = (start as u32 as usize).min(buffer.len());
                    let end = (start as u64 + max as u32 as u64).min(buffer.len() as u64) as usize;
                    buffer[start..end].to_vec()
                };
                hand_back(&mut caller, &bytes, ptr_out, size_out).await?;
                Ok(status::OK)
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Ctx<'_>,
         kind: i32,
         start: i32,
         size: i32,
         ptr: i32,
         len: i32|
         -> Result<i32> {
            let data = read(&caller, ptr, len)?;
            let kind = Buffer::from_abi(kind);
            let Some(stream) = stream(&mut caller) else {
                return Ok(status::NOT_FOUND);
            };
            let buffer = match kind {
                Some(Buffer::RequestBody) => &mut stream.request_body,
                Some(Buffer::ResponseBody) => &mut stream.response_body,
                Some(_) => return Ok(status::NOT_FOUND),
                None => return Ok(status::BAD_ARGUMENT),
            };
            let buffer = buffer.get_or_insert_with(Vec::new);
            let start = (start as u32 as usize).min(buffer.len());
            let end = start.saturating_add(size as u32 as usize).min(buffer.len());
            if buffer.len() - (end - start) + data.len() > bounds::MAX_BODY_BYTES {
                return Err(wasmtime::format_err!(
                    "body set over {} bytes",
                    bounds::MAX_BODY_BYTES
                ));
            }
            buffer.splice(start..end, data);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut caller: Ctx<'_>, kind: i32, len_out: i32, flags_out: i32| -> Result<i32> {
            let len = match (Buffer::from_abi(kind), caller.data().stream.as_ref()) {
                (Some(Buffer::RequestBody), Some(s)) => s.request_body.as_ref().map(Vec::len),
                (Some(Buffer::ResponseBody), Some(s)) => s.response_body.as_ref().map(Vec::len),
                (Some(Buffer::PluginConfiguration), _) => Some(caller.data().entry.config.len()),
                _ => None,
            };
            let Some(len) = len else {
                return Ok(status::NOT_FOUND);
            };
            write_u32(&mut caller, len_out, len as u32)?;
            write_u32(&mut caller, flags_out, 0)?;
            Ok(status::OK)
        },
    )?;

    // ---- header maps ----
    linker.func_wrap_async(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Ctx<'_>, (map, ptr_out, size_out): (i32, i32, i32)| {
            Box::new(async move {
                let bytes = match (Map::from_abi(map), stream(&mut caller)) {
                    (Some(map), Some(stream)) => map_of(stream, map).map(|m| abi::encode_map(m)),
                    _ => None,
                };
                let bytes = bytes.unwrap_or_else(|| abi::encode_map(&[]));
                hand_back(&mut caller, &bytes, ptr_out, size_out).await?;
                Ok(status::OK)
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Ctx<'_>, map: i32, ptr: i32, len: i32| -> Result<i32> {
            let pairs = abi::decode_map(&read(&caller, ptr, len)?)
                .map_err(|e| wasmtime::format_err!("proxy_set_header_map_pairs: {e}"))?;
            if let (Some(map), Some(stream)) = (Map::from_abi(map), stream(&mut caller)) {
                if let Some(target) = map_of(stream, map) {
                    // Pseudo-headers stay unless the filter sets them again.
                    let mut kept: Pairs = target
                        .iter()
                        .filter(|(n, _)| n.starts_with(':') && !pairs.iter().any(|(p, _)| p == n))
                        .cloned()
                        .collect();
                    kept.extend(pairs);
                    *target = kept;
                }
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Ctx<'_>,
         (map, key_ptr, key_len, ptr_out, size_out): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let key = read_str(&caller, key_ptr, key_len)?;
                let value = match (Map::from_abi(map), stream(&mut caller)) {
                    (Some(map), Some(stream)) => {
                        map_of(stream, map).and_then(|m| header(m, &key).map(str::to_string))
                    }
                    _ => None,
                };
                let Some(value) = value else {
                    return Ok(status::NOT_FOUND);
                };
                hand_back(&mut caller, value.as_bytes(), ptr_out, size_out).await?;
                Ok(status::OK)
            })
        },
    )?;
    for (name, replace) in [
        ("proxy_add_header_map_value", false),
        ("proxy_replace_header_map_value", true),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut caller: Ctx<'_>,
                  map: i32,
                  kp: i32,
                  kl: i32,
                  vp: i32,
                  vl: i32|
                  -> Result<i32> {
                let key = read_str(&caller, kp, kl)?.to_ascii_lowercase();
                let value = read_str(&caller, vp, vl)?;
                if let (Some(map), Some(stream)) = (Map::from_abi(map), stream(&mut caller)) {
                    if let Some(pairs) = map_of(stream, map) {
                        if replace {
                            if let Some(at) = pairs.iter().position(|(n, _)| *n == key) {
                                pairs[at].1 = value;
                                let mut seen = false;
                                pairs.retain(|(n, _)| {
                                    *n != key || !std::mem::replace(&mut seen, true)
                                });
                                return Ok(status::OK);
                            }
                        }
                        pairs.push((key, value));
                    }
                }
                Ok(status::OK)
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Ctx<'_>, map: i32, kp: i32, kl: i32| -> Result<i32> {
            let key = read_str(&caller, kp, kl)?;
            if let (Some(map), Some(stream)) = (Map::from_abi(map), stream(&mut caller)) {
                if let Some(pairs) = map_of(stream, map) {
                    pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(&key));
                }
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut caller: Ctx<'_>, map: i32, out: i32| -> Result<i32> {
            let size = match (Map::from_abi(map), stream(&mut caller)) {
                (Some(map), Some(stream)) => map_of(stream, map).map(|m| abi::encode_map(m).len()),
                _ => None,
            };
            write_u32(&mut caller, out, size.unwrap_or(4) as u32)?;
            Ok(status::OK)
        },
    )?;

    // ---- properties ----
    linker.func_wrap_async(
        "env",
        "proxy_get_property",
        |mut caller: Ctx<'_>, (ptr, len, ptr_out, size_out): (i32, i32, i32, i32)| {
            Box::new(async move {
                let path = read_str(&caller, ptr, len)?;
                let Some(value) = property(caller.data(), &path) else {
                    return Ok(status::NOT_FOUND);
                };
                hand_back(&mut caller, &value, ptr_out, size_out).await?;
                Ok(status::OK)
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |caller: Ctx<'_>, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
            unsupported(&caller, "proxy_set_property", "properties are read-only");
            Ok(status::OK)
        },
    )?;

    // ---- shared data and queues ----
    linker.func_wrap_async(
        "env",
        "proxy_get_shared_data",
        |mut caller: Ctx<'_>, (kp, kl, ptr_out, size_out, cas_out): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let key = read_str(&caller, kp, kl)?;
                let Some((value, cas)) = shared::get(&mut caller, &key).await? else {
                    return Ok(status::NOT_FOUND);
                };
                hand_back(&mut caller, &value, ptr_out, size_out).await?;
                write_u32(&mut caller, cas_out, cas)?;
                Ok(status::OK)
            })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_set_shared_data",
        |mut caller: Ctx<'_>, (kp, kl, vp, vl, cas): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let key = read_str(&caller, kp, kl)?;
                let value = if vp == 0 {
                    None
                } else {
                    Some(read(&caller, vp, vl)?)
                };
                shared::set(&mut caller, &key, value, cas as u32).await
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Ctx<'_>, ptr: i32, len: i32, out: i32| -> Result<i32> {
            if len as u32 as usize > shared::MAX_QUEUE_NAME_BYTES {
                return Err(too_many_queues());
            }
            let name = read_str(&caller, ptr, len)?;
            let entry = &caller.data().entry;
            let id = shared::queues()
                .register(&entry.plugin, &name, &entry.queue_watch)
                .ok_or_else(too_many_queues)?;
            write_u32(&mut caller, out, id)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Ctx<'_>, vp: i32, vl: i32, np: i32, nl: i32, out: i32| -> Result<i32> {
            let vm = read_str(&caller, vp, vl)?;
            let name = read_str(&caller, np, nl)?;
            let vm = if vm.is_empty() {
                caller.data().entry.plugin.to_string()
            } else {
                vm
            };
            match shared::queues().resolve(&vm, &name) {
                Some(id) => {
                    write_u32(&mut caller, out, id)?;
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |caller: Ctx<'_>, id: i32, ptr: i32, len: i32| -> Result<i32> {
            if len as u32 as usize > shared::MAX_QUEUE_ITEM_BYTES {
                return Ok(status::BAD_ARGUMENT);
            }
            let value = read(&caller, ptr, len)?;
            Ok(if shared::queues().enqueue(id as u32, value) {
                status::OK
            } else {
                status::NOT_FOUND
            })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Ctx<'_>, (id, ptr_out, size_out): (i32, i32, i32)| {
            Box::new(async move {
                let owner = caller.data().entry.plugin.clone();
                let item = shared::queues().dequeue(&owner, id as u32);
                match item {
                    None => Ok(status::NOT_FOUND),
                    Some(None) => Ok(status::EMPTY),
                    Some(Some(value)) => {
                        hand_back(&mut caller, &value, ptr_out, size_out).await?;
                        Ok(status::OK)
                    }
                }
            })
        },
    )?;

    // ---- stream control ----
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Ctx<'_>, _stream_type: i32| -> Result<i32> {
            if let Some(stream) = stream(&mut caller) {
                stream.paused = false;
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Ctx<'_>, _stream_type: i32| -> Result<i32> {
            unsupported(
                &caller,
                "proxy_close_stream",
                "answered with a local 502 instead of a reset",
            );
            if let Some(stream) = stream(&mut caller) {
                stream.local_response.get_or_insert(Response {
                    status: 502,
                    headers: Vec::new(),
                    body: None,
                });
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Ctx<'_>,
         code: i32,
         _dp: i32,
         _dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32|
         -> Result<i32> {
            let body = if bp == 0 {
                None
            } else {
                Some(read(&caller, bp, bl)?)
            };
            let headers = abi::decode_map(&read(&caller, hp, hl)?)
                .map_err(|e| wasmtime::format_err!("proxy_send_local_response: {e}"))?;
            let response = Response {
                status: u16::try_from(code).unwrap_or(500),
                headers,
                body,
            };
            if let Err(refusal) = bounds::check_response(&response) {
                return Err(wasmtime::format_err!("local response refused: {refusal}"));
            }
            if let Some(stream) = stream(&mut caller) {
                stream.local_response = Some(response);
                stream.paused = false;
            }
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |caller: Ctx<'_>, id: i32| -> Result<i32> {
            let id = id as u32;
            let known = id == ROOT_ID || caller.data().stream.as_ref().is_some_and(|s| s.id == id);
            Ok(if known {
                status::OK
            } else {
                status::BAD_ARGUMENT
            })
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_: Ctx<'_>| -> Result<i32> {
        Ok(status::OK)
    })?;

    // ---- HTTP and gRPC calls ----
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Ctx<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         _tp: i32,
         _tl: i32,
         timeout_ms: i32,
         token_out: i32|
         -> Result<i32> {
            let upstream = read_str(&caller, up, ul)?;
            let Ok(headers) = abi::decode_map(&read(&caller, hp, hl)?) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let body = if bp == 0 { None } else { Some(read(&caller, bp, bl)?) };
            let (Some(method), Some(path), Some(_)) = (
                header(&headers, ":method"),
                header(&headers, ":path"),
                header(&headers, ":authority"),
            ) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let (method, path) = (method.to_string(), path.to_string());
            let headers: Pairs = headers.into_iter().filter(|(n, _)| !n.starts_with(':')).collect();
            // The bounds a component's outbound request has.
            if let Err(refusal) =
                bounds::check_outbound_parts(&headers, body.as_ref().map(Vec::len))
            {
                bounds::count(&caller.data().entry.plugin, refusal.what, refusal.reason);
                return Ok(status::BAD_ARGUMENT);
            }
            let state = caller.data();
            if !state.entry.grants.allows_upstream(&upstream) {
                let why = format!(
                    "upstream `{upstream}` is not granted: add `outbound:{upstream}` to the entry's `allow:`"
                );
                unsupported(&caller, "proxy_http_call", &why);
                return Ok(status::BAD_ARGUMENT);
            }
            if state.stream.is_none() {
                unsupported(&caller, "proxy_http_call", "calls outside a request are not supported");
                return Ok(status::BAD_ARGUMENT);
            }
            if !CallBudget::take(&mut caller.data_mut().budget.outbound_requests) {
                return Ok(status::INTERNAL_FAILURE);
            }
            let token = caller.data_mut().next_token();
            let call = PendingCall {
                token,
                upstream,
                method,
                path,
                headers,
                body,
                timeout_ms: timeout_ms as u32,
            };
            stream(&mut caller).expect("checked above").pending_calls.push(call);
            write_u32(&mut caller, token_out, token)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_get_status",
        |mut caller: Ctx<'_>, (code_out, ptr_out, size_out): (i32, i32, i32)| {
            Box::new(async move {
                write_u32(&mut caller, code_out, 0)?;
                hand_back(&mut caller, &[], ptr_out, size_out).await?;
                Ok(status::OK)
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |caller: Ctx<'_>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Result<i32> {
            unsupported(&caller, "proxy_grpc_call", "gRPC calls are not supported");
            Ok(status::INTERNAL_FAILURE)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |caller: Ctx<'_>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Result<i32> {
            unsupported(&caller, "proxy_grpc_stream", "gRPC calls are not supported");
            Ok(status::INTERNAL_FAILURE)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |_: Ctx<'_>, _: i32, _: i32, _: i32, _: i32| -> Result<i32> { Ok(status::BAD_ARGUMENT) },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        linker.func_wrap("env", name, |_: Ctx<'_>, _: i32| -> Result<i32> {
            Ok(status::NOT_FOUND)
        })?;
    }
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |caller: Ctx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> Result<i32> {
            unsupported(
                &caller,
                "proxy_call_foreign_function",
                "no foreign functions",
            );
            Ok(status::NOT_FOUND)
        },
    )?;

    // ---- metrics ----
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Ctx<'_>, kind: i32, ptr: i32, len: i32, out: i32| -> Result<i32> {
            if len as u32 as usize > bounds::MAX_METRIC_NAME_BYTES {
                return Ok(status::BAD_ARGUMENT);
            }
            let name = read_str(&caller, ptr, len)?;
            let Some(kind) = MetricKind::from_abi(kind) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(id) = caller.data().entry.metrics.define(kind, &name) else {
                return Ok(status::BAD_ARGUMENT);
            };
            write_u32(&mut caller, out, id)?;
            Ok(status::OK)
        },
    )?;
    for (name, record) in [
        ("proxy_increment_metric", false),
        ("proxy_record_metric", true),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut caller: Ctx<'_>, id: i32, value: i64| -> Result<i32> {
                if !CallBudget::take(&mut caller.data_mut().budget.metric_updates) {
                    return Ok(status::OK);
                }
                let entry = caller.data().entry.clone();
                Ok(
                    match entry.metrics.update(&entry, id as u32, value, record) {
                        true => status::OK,
                        false => status::NOT_FOUND,
                    },
                )
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Ctx<'_>, id: i32, out: i32| -> Result<i32> {
            let Some(value) = caller.data().entry.metrics.value(id as u32) else {
                return Ok(status::NOT_FOUND);
            };
            write(&mut caller, out, &value.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    Ok(())
}

/// A property's value, Envoy-encoded (strings as bytes, integers as
/// 8-byte LE, booleans as one byte); `None`: not known here.
fn property(state: &FilterState, path: &str) -> Option<Vec<u8>> {
    let stream = state.stream.as_ref();
    let request_header = |name: &str| {
        stream.and_then(|s| header(&s.request_headers, name).map(|v| v.as_bytes().to_vec()))
    };
    let segments: Vec<&str> = path.split('\0').collect();
    Some(match segments.as_slice() {
        ["plugin_name"] => state.entry.plugin.as_bytes().to_vec(),
        ["route_name"] => state.entry.route.as_bytes().to_vec(),
        ["request", "path"] => request_header(":path")?,
        ["request", "url_path"] => {
            let path = request_header(":path")?;
            path.split(|b| *b == b'?')
                .next()
                .unwrap_or_default()
                .to_vec()
        }
        ["request", "method"] => request_header(":method")?,
        ["request", "host"] => request_header(":authority")?,
        ["request", "scheme"] => request_header(":scheme")?,
        ["request", "headers"] => {
            let headers: Pairs = stream?
                .request_headers
                .iter()
                .filter(|(n, _)| !n.starts_with(':'))
                .cloned()
                .collect();
            abi::encode_map(&headers)
        }
        ["request", "id"] => stream?.facts.request_id.as_bytes().to_vec(),
        ["source", "address"] => stream?.facts.client_addr.as_bytes().to_vec(),
        ["connection", "mtls"] => vec![u8::from(stream?.facts.mtls)],
        ["response", "code"] => {
            let status: i64 = header(&stream?.response_headers, ":status")?.parse().ok()?;
            status.to_le_bytes().to_vec()
        }
        _ => return None,
    })
}

// ---- WASI preview1, minimal ----------------------------------------------

fn add_wasi(linker: &mut Linker<FilterState>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Ctx<'_>, fd: i32, iovs: i32, count: i32, written_out: i32| -> Result<i32> {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            let vectors = read(&caller, iovs, count.saturating_mul(8))?;
            let text = gather_log_write(&caller, &vectors)?;
            write_u32(&mut caller, written_out, text.len() as u32)?;
            let entry = caller.data().entry.clone();
            let mut message = String::from_utf8_lossy(&text).trim_end().to_string();
            bounds::truncate(&mut message, bounds::MAX_LOG_MESSAGE_BYTES);
            if !message.is_empty() && CallBudget::take(&mut caller.data_mut().budget.log_lines) {
                let level = if fd == 1 {
                    LogLevel::Info
                } else {
                    LogLevel::Error
                };
                entry
                    .services
                    .telemetry
                    .log(&entry.plugin, &entry.route, level, &message, &[]);
            }
            Ok(errno::SUCCESS)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        linker.func_wrap(
            WASI,
            name,
            |mut caller: Ctx<'_>, count: i32, size: i32| -> Result<i32> {
                write_u32(&mut caller, count, 0)?;
                write_u32(&mut caller, size, 0)?;
                Ok(errno::SUCCESS)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        linker.func_wrap(WASI, name, |_: Ctx<'_>, _: i32, _: i32| -> Result<i32> {
            Ok(errno::SUCCESS)
        })?;
    }
    linker.func_wrap(WASI, "proc_exit", |_: Ctx<'_>, code: i32| -> Result<()> {
        Err(wasmtime::format_err!("the filter called proc_exit({code})"))
    })?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Ctx<'_>, clock: i32, _precision: i64, out: i32| -> Result<i32> {
            let nanos = match clock {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
                1..=3 => monotonic_origin().elapsed(),
                _ => return Ok(errno::INVAL),
            };
            write(&mut caller, out, &(nanos.as_nanos() as u64).to_le_bytes())?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Ctx<'_>, ptr: i32, len: i32| -> Result<i32> {
            // Checked before any work: the length is the guest's to choose.
            let len = len as u32 as usize;
            if len > MAX_RANDOM_BYTES {
                return Ok(errno::INVAL);
            }
            let mut bytes = Vec::with_capacity(len + 16);
            while bytes.len() < len {
                bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            }
            bytes.truncate(len);
            write(&mut caller, ptr, &bytes)?;
            Ok(errno::SUCCESS)
        },
    )?;
    linker.func_wrap(WASI, "sched_yield", |_: Ctx<'_>| -> Result<i32> {
        Ok(errno::SUCCESS)
    })?;
    Ok(())
}

/// A queue registration past the bounds faults the call: the SDK has no
/// status for it (it panics on any but `Ok`), and a filter that registers
/// queues named after data is broken, not unlucky.
fn too_many_queues() -> wasmtime::Error {
    wasmtime::format_err!(
        "a shared queue past the bounds ({} queues per plugin, names of at most {} bytes)",
        shared::MAX_QUEUES_PER_PLUGIN,
        shared::MAX_QUEUE_NAME_BYTES
    )
}

/// The most bytes one `random_get` fills: enough for any seed or nonce,
/// and host work a guest cannot multiply (a larger request is `INVAL`).
const MAX_RANDOM_BYTES: usize = 64 << 10;

/// What one `fd_write` takes from its iovecs: at most a log message's worth,
/// taken in order, as a partial write (callers loop on the count written).
/// Every iovec is bounds-checked but none is copied whole, so iovecs that all
/// point at one large region cannot make the host copy it over and over.
fn gather_log_write(caller: &Ctx<'_>, vectors: &[u8]) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let data = memory.data(caller);
    let mut text = Vec::new();
    for iov in vectors.chunks_exact(8) {
        let ptr = u32::from_le_bytes(iov[0..4].try_into().expect("4 bytes")) as usize;
        let len = u32::from_le_bytes(iov[4..8].try_into().expect("4 bytes")) as usize;
        let bytes = data
            .get(ptr..ptr.saturating_add(len))
            .ok_or_else(|| wasmtime::format_err!("guest pointer out of bounds ({ptr}+{len})"))?;
        let room = bounds::MAX_LOG_MESSAGE_BYTES - text.len();
        text.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
    Ok(text)
}

/// The origin of the monotonic clock filters read.
fn monotonic_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}
