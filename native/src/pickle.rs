//! Snapshot entries written straight as pickles (protocol 4), for `dump`: what
//! `pickle.dumps(table.entry(key))` would give the unpickler, without building the entry's
//! Python objects (lists of ints, sets of strings) only to serialise them again. No memo and
//! no frames: both are optional for the unpickler, and nothing is shared inside an entry.

use std::collections::HashSet;

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const NONE: u8 = b'N';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const EMPTY_LIST: u8 = b']';
const APPENDS: u8 = b'e';
const EMPTY_SET: u8 = 0x8f;
const ADDITEMS: u8 = 0x90;
const TUPLE: u8 = b't';

pub struct Pickler {
    buf: Vec<u8>,
}

impl Pickler {
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 3);
        buf.extend_from_slice(&[PROTO, 4]);
        Pickler { buf }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(STOP);
        self.buf
    }

    /// Opens a tuple (or a list's or set's items): closed by `tuple`, `list_end`, `set_end`.
    pub fn mark(&mut self) {
        self.buf.push(MARK);
    }

    pub fn tuple(&mut self) {
        self.buf.push(TUPLE);
    }

    pub fn none(&mut self) {
        self.buf.push(NONE);
    }

    pub fn int(&mut self, value: i64) {
        match i32::try_from(value) {
            Ok(small) => {
                self.buf.push(BININT);
                self.buf.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => {
                // Two's complement, little-endian: the unpickler reads any length.
                self.buf.extend_from_slice(&[LONG1, 8]);
                self.buf.extend_from_slice(&value.to_le_bytes());
            }
        }
    }

    pub fn float(&mut self, value: f64) {
        self.buf.push(BINFLOAT);
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub fn bytes(&mut self, value: &[u8]) {
        match u8::try_from(value.len()) {
            Ok(len) => self.buf.extend_from_slice(&[SHORT_BINBYTES, len]),
            Err(_) => {
                self.buf.push(BINBYTES);
                self.buf
                    .extend_from_slice(&(value.len() as u32).to_le_bytes());
            }
        }
        self.buf.extend_from_slice(value);
    }

    pub fn str(&mut self, value: &str) {
        match u8::try_from(value.len()) {
            Ok(len) => self.buf.extend_from_slice(&[SHORT_BINUNICODE, len]),
            Err(_) => {
                self.buf.push(BINUNICODE);
                self.buf
                    .extend_from_slice(&(value.len() as u32).to_le_bytes());
            }
        }
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// A list of ints.
    pub fn ints(&mut self, values: impl IntoIterator<Item = i64>) {
        self.buf.extend_from_slice(&[EMPTY_LIST, MARK]);
        for value in values {
            self.int(value);
        }
        self.buf.push(APPENDS);
    }

    /// A list whose items the caller writes after this and closes with `list_end`.
    pub fn list_start(&mut self) {
        self.buf.extend_from_slice(&[EMPTY_LIST, MARK]);
    }

    pub fn list_end(&mut self) {
        self.buf.push(APPENDS);
    }

    /// A set of strings.
    pub fn strs(&mut self, values: &HashSet<String>) {
        self.buf.extend_from_slice(&[EMPTY_SET, MARK]);
        for value in values {
            self.str(value);
        }
        self.buf.push(ADDITEMS);
    }
}
