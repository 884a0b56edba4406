//! The protobuf wire format, as far as ONNX files need it: fields read without decoding what
//! is not asked for, fields written, and the field numbers of onnx.proto.

use crate::{GraphError, Result};

/// One protobuf field: its number, wire type, payload and the whole encoded field.
pub(crate) struct Field<'a> {
    pub number: u64,
    pub wire: u8,
    /// Payload of a length-delimited field; the varint bytes of a varint field.
    pub payload: &'a [u8],
    pub raw: &'a [u8],
}

pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or(GraphError("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(GraphError("varint too long"))
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(crate) fn write_bytes_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    write_varint(out, (number << 3) | 2);
    write_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

pub(crate) fn fields(msg: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let start = pos;
        let tag = read_varint(msg, &mut pos)?;
        let wire = (tag & 7) as u8;
        let payload_start;
        let payload_end;
        match wire {
            0 => {
                payload_start = pos;
                read_varint(msg, &mut pos)?;
                payload_end = pos;
            }
            1 => {
                payload_start = pos;
                pos += 8;
                payload_end = pos;
            }
            2 => {
                let len = read_varint(msg, &mut pos)? as usize;
                payload_start = pos;
                pos = pos.checked_add(len).ok_or(GraphError("length overflow"))?;
                payload_end = pos;
            }
            5 => {
                payload_start = pos;
                pos += 4;
                payload_end = pos;
            }
            _ => return Err(GraphError("unsupported wire type")),
        }
        if pos > msg.len() {
            return Err(GraphError("field runs past the end"));
        }
        out.push(Field { number: tag >> 3, wire, payload: &msg[payload_start..payload_end], raw: &msg[start..pos] });
    }
    Ok(out)
}

pub(crate) fn string_field(msg: &[u8], number: u64) -> Result<Option<&str>> {
    Ok(fields(msg)?
        .into_iter()
        .find(|f| f.number == number && f.wire == 2)
        .and_then(|f| std::str::from_utf8(f.payload).ok()))
}

pub(crate) fn string_fields(msg: &[u8], number: u64) -> Result<Vec<&str>> {
    Ok(fields(msg)?
        .into_iter()
        .filter(|f| f.number == number && f.wire == 2)
        .filter_map(|f| std::str::from_utf8(f.payload).ok())
        .collect())
}

// Field numbers of onnx.proto.
pub(crate) const MODEL_GRAPH: u64 = 7;
pub(crate) const GRAPH_NODE: u64 = 1;
pub(crate) const GRAPH_INITIALIZER: u64 = 5;
pub(crate) const GRAPH_INPUT: u64 = 11;
pub(crate) const GRAPH_OUTPUT: u64 = 12;
pub(crate) const GRAPH_VALUE_INFO: u64 = 13;
pub(crate) const NODE_INPUT: u64 = 1;
pub(crate) const NODE_OP_TYPE: u64 = 4;
pub(crate) const NODE_ATTRIBUTE: u64 = 5;
pub(crate) const ATTRIBUTE_NAME: u64 = 1;
pub(crate) const TENSOR_DIMS: u64 = 1;
pub(crate) const TENSOR_NAME: u64 = 8;
pub(crate) const VALUE_INFO_NAME: u64 = 1;
pub(crate) const VALUE_INFO_TYPE: u64 = 2;
pub(crate) const TYPE_TENSOR: u64 = 1;
pub(crate) const TENSOR_TYPE_SHAPE: u64 = 2;
pub(crate) const SHAPE_DIM: u64 = 1;
pub(crate) const DIM_PARAM: u64 = 2;
pub(crate) const NODE_OUTPUT: u64 = 2;
pub(crate) const ATTRIBUTE_FLOAT: u64 = 2;
pub(crate) const ATTRIBUTE_INT: u64 = 3;
pub(crate) const ATTRIBUTE_TENSOR: u64 = 5;
pub(crate) const ATTRIBUTE_INTS: u64 = 8;
pub(crate) const TENSOR_DATA_TYPE: u64 = 2;
pub(crate) const TENSOR_FLOAT_DATA: u64 = 4;
pub(crate) const TENSOR_INT32_DATA: u64 = 5;
pub(crate) const TENSOR_INT64_DATA: u64 = 7;
pub(crate) const TENSOR_RAW_DATA: u64 = 9;
pub(crate) const MODEL_METADATA_PROPS: u64 = 14;
pub(crate) const STRING_ENTRY_KEY: u64 = 1;
pub(crate) const STRING_ENTRY_VALUE: u64 = 2;
pub(crate) const MODEL_IR_VERSION: u64 = 1;
pub(crate) const MODEL_PRODUCER_NAME: u64 = 2;
pub(crate) const MODEL_PRODUCER_VERSION: u64 = 3;
pub(crate) const MODEL_OPSET_IMPORT: u64 = 8;
pub(crate) const OPSET_DOMAIN: u64 = 1;
pub(crate) const OPSET_VERSION: u64 = 2;
pub(crate) const GRAPH_NAME: u64 = 2;
pub(crate) const NODE_NAME: u64 = 3;
pub(crate) const ATTRIBUTE_TYPE: u64 = 20;
pub(crate) const TENSOR_ELEM_TYPE: u64 = 1;
pub(crate) const DIM_VALUE: u64 = 1;

// TensorProto data types maskid reads and writes.
pub(crate) const FLOAT: u64 = 1;
pub(crate) const INT8: u64 = 3;
pub(crate) const INT32: u64 = 6;
pub(crate) const INT64: u64 = 7;

pub(crate) fn write_int_field(out: &mut Vec<u8>, number: u64, value: i64) {
    write_varint(out, number << 3);
    write_varint(out, value as u64);
}

/// The varints of a varint field or of a packed repeated one.
pub(crate) fn varints(payload: &[u8]) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        out.push(read_varint(payload, &mut pos)?);
    }
    Ok(out)
}

/// One `metadata_props` entry of a ModelProto, as its encoded field.
pub(crate) fn metadata_entry(out: &mut Vec<u8>, key: &str, value: &str) {
    let mut entry = Vec::new();
    write_bytes_field(&mut entry, STRING_ENTRY_KEY, key.as_bytes());
    write_bytes_field(&mut entry, STRING_ENTRY_VALUE, value.as_bytes());
    write_bytes_field(out, MODEL_METADATA_PROPS, &entry);
}

/// A float32 TensorProto.
pub(crate) fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        write_int_field(&mut t, TENSOR_DIMS, d as i64);
    }
    write_int_field(&mut t, TENSOR_DATA_TYPE, FLOAT as i64);
    write_bytes_field(&mut t, TENSOR_NAME, name.as_bytes());
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes_field(&mut t, TENSOR_RAW_DATA, &raw);
    t
}
