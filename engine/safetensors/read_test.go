package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serl-go/serl/engine/dtype"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawFile assembles a safetensors file by hand: the length prefix, the header
// exactly as given, then data.
func rawFile(header string, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func writeTemp(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.safetensors")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func f32bits(fs []float32) []uint32 {
	out := make([]uint32, len(fs))
	for i, f := range fs {
		out[i] = math.Float32bits(f)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	vals := []float32{1, -2.5, 3.14159, 1e-6, 65504, 70000, -0.0, float32(math.Inf(1)), 0.1, 123456.78, -1e-30, 7}
	f32t, err := FromFloat32("layer.0.w", F32, []int{3, 4}, vals)
	require.NoError(t, err)
	bf16t, err := FromFloat32("layer.0.bf", BF16, []int{12}, vals)
	require.NoError(t, err)
	f16t, err := FromFloat32("layer.0.h", F16, []int{2, 2, 3}, vals)
	require.NoError(t, err)
	scalar, err := FromFloat32("scale", F32, []int{}, []float32{0.5})
	require.NoError(t, err)
	empty, err := FromFloat32("empty", BF16, []int{0}, nil)
	require.NoError(t, err)
	empty2, err := FromFloat32("empty2", F32, []int{3, 0}, nil)
	require.NoError(t, err)
	// An odd-length U8 tensor puts the next F32 tensor at an unaligned
	// offset, which the decoders must handle.
	u8 := TensorData{Name: "mask", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}}
	after, err := FromFloat32("unaligned", F32, []int{2}, []float32{-1, 2})
	require.NoError(t, err)
	i64 := TensorData{Name: "ids", DType: I64, Shape: []int{1}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0}}
	tensors := []TensorData{f32t, bf16t, empty, f16t, scalar, u8, after, empty2, i64}

	path := filepath.Join(t.TempDir(), "m.safetensors")
	require.NoError(t, Write(path, tensors, map[string]string{"step": "42", "note": "héllo \"quoted\" <tag>"}))

	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []string{"layer.0.w", "layer.0.bf", "empty", "layer.0.h", "scale", "mask", "unaligned", "empty2", "ids"}, f.Names())
	assert.Equal(t, map[string]string{"format": "pt", "step": "42", "note": "héllo \"quoted\" <tag>"}, f.Metadata())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	dataStart := int64(8 + binary.LittleEndian.Uint64(raw))
	off := dataStart
	for _, td := range tensors {
		info, ok := f.Tensor(td.Name)
		require.True(t, ok, td.Name)
		assert.Equal(t, td.DType, info.DType, td.Name)
		assert.Equal(t, td.Shape, info.Shape, td.Name)
		assert.Equal(t, off, info.Offset, td.Name)
		assert.Equal(t, int64(len(td.Data)), info.Size, td.Name)
		assert.Equal(t, path, info.File)
		b, err := f.Bytes(td.Name)
		require.NoError(t, err)
		assert.Equal(t, td.Data, b, td.Name)
		assert.Equal(t, raw[off:off+info.Size], b, "Offset is absolute in the file")
		off += info.Size
	}
	assert.Equal(t, int64(len(raw)), off)

	got := make([]float32, 12)
	require.NoError(t, f.Float32("layer.0.w", got))
	assert.Equal(t, f32bits(vals), f32bits(got), "F32 is bit-exact")

	want := make([]float32, 12)
	for i, v := range vals {
		want[i] = dtype.BF16ToFloat32(dtype.BF16Bits(v))
	}
	require.NoError(t, f.Float32("layer.0.bf", got))
	assert.Equal(t, f32bits(want), f32bits(got), "BF16 rounds to nearest even")
	for i, v := range vals {
		want[i] = dtype.F16ToFloat32(dtype.F16Bits(v))
	}
	require.NoError(t, f.Float32("layer.0.h", got))
	assert.Equal(t, f32bits(want), f32bits(got), "F16 rounds to nearest even")
	assert.True(t, math.IsInf(float64(got[5]), 1), "70000 overflows f16")

	one := make([]float32, 1)
	require.NoError(t, f.Float32("scale", one))
	assert.Equal(t, float32(0.5), one[0])
	two := make([]float32, 2)
	require.NoError(t, f.Float32("unaligned", two))
	assert.Equal(t, []float32{-1, 2}, two)
	require.NoError(t, f.Float32("empty", nil))
	require.NoError(t, f.Float32("empty2", []float32{}))

	err = f.Float32("ids", make([]float32, 1))
	require.ErrorContains(t, err, `tensor "ids" is I64`)
	err = f.Float32("layer.0.w", make([]float32, 11))
	require.ErrorContains(t, err, `"layer.0.w" has 12 elements`)
	require.ErrorContains(t, err, path)
	_, err = f.Bytes("nope")
	require.ErrorContains(t, err, `no tensor "nope"`)
	_, ok := f.Tensor("nope")
	assert.False(t, ok)

	// Info must be a copy: callers cannot corrupt the file's view.
	info, _ := f.Tensor("layer.0.w")
	info.Shape[0] = 99
	info2, _ := f.Tensor("layer.0.w")
	assert.Equal(t, []int{3, 4}, info2.Shape)
	assert.Equal(t, 12, info2.NumElements())

	require.NoError(t, f.Close())
	_, err = f.Bytes("scale")
	require.ErrorContains(t, err, "closed")
	require.NoError(t, f.Close(), "Close twice is harmless")
}

func TestHeaderLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.safetensors")
	a, err := FromFloat32("a", F32, []int{1}, []float32{1})
	require.NoError(t, err)
	require.NoError(t, Write(path, []TensorData{a}, nil))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	hdr := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`
	padded := hdr + strings.Repeat(" ", (8-len(hdr)%8)%8)
	require.Equal(t, rawFile(padded, []byte{0, 0, 0x80, 0x3f}), raw, "exact bytes of a tiny file")

	// Padding for every header length modulo 8.
	for n := 1; n <= 8; n++ {
		name := strings.Repeat("x", n)
		td, err := FromFloat32(name, BF16, []int{1}, []float32{2})
		require.NoError(t, err)
		require.NoError(t, Write(path, []TensorData{td}, nil))
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		hl := binary.LittleEndian.Uint64(raw)
		assert.Zero(t, hl%8, "header length %d", hl)
		h := string(raw[8 : 8+hl])
		trimmed := strings.TrimRight(h, " ")
		assert.True(t, strings.HasSuffix(trimmed, "}"))
		assert.Less(t, len(h)-len(trimmed), 8)
		assert.Contains(t, h, `"format":"pt"`)
	}
}

// A file laid out as the Python safetensors package writes it (metadata
// last, tensors sorted by name, not by offset) reads correctly.
func TestReadsReferenceLayout(t *testing.T) {
	hdr := `{"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"__metadata__":{"format":"pt"}}`
	hdr += strings.Repeat(" ", (8-len(hdr)%8)%8)
	path := writeTemp(t, rawFile(hdr, []byte{0x80, 0x3f, 0x00, 0xc0, 0, 0, 0x40, 0x40}))
	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []string{"b", "a"}, f.Names())
	got := make([]float32, 2)
	require.NoError(t, f.Float32("b", got))
	assert.Equal(t, []float32{1, -2}, got)
	require.NoError(t, f.Float32("a", got[:1]))
	assert.Equal(t, float32(3), got[0])
}

func TestMalformed(t *testing.T) {
	d8 := make([]byte, 8)
	tensor := func(name, dt, shape, offs string) string {
		return `"` + name + `":{"dtype":"` + dt + `","shape":` + shape + `,"data_offsets":` + offs + `}`
	}
	ok1 := tensor("a", "F32", "[2]", "[0,8]")
	huge := binary.LittleEndian.AppendUint64(nil, 1<<40)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "shorter than the 8-byte header length"},
		{"truncated length", []byte{1, 2, 3}, "file is 3 bytes"},
		{"truncated header", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, nil)[:30], "runs past the end of the file"},
		{"header length huge", append(huge, "{}"...), "exceeds the"},
		{"header length max uint64", append([]byte{255, 255, 255, 255, 255, 255, 255, 255}, "{}"...), "exceeds the"},
		{"bad JSON", rawFile(`{"a":{"dtype":`, d8), "not valid JSON"},
		{"empty header", rawFile(``, nil), "not valid JSON"},
		{"JSON array", rawFile(`[]`, nil), "header must be a JSON object, found an array"},
		{"JSON string", rawFile(`"x"`, nil), "header must be a JSON object"},
		{"trailing garbage", rawFile(`{} {}`, nil), "trailing an object"},
		{"trailing NUL", rawFile("{}\x00", nil), "trailing bytes"},
		{"invalid UTF-8", rawFile("{\"\xff\":1}", nil), "not valid UTF-8"},
		{"duplicate tensor", rawFile(`{`+ok1+`,`+ok1+`}`, d8), `duplicate key "a"`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), `duplicate key "__metadata__"`},
		{"duplicate metadata key", rawFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), `__metadata__: duplicate key "k"`},
		{"duplicate field", rawFile(`{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, d8), `tensor "a": duplicate field "dtype"`},
		{"unknown dtype", rawFile(`{`+tensor("a", "F8", "[2]", "[0,8]")+`}`, d8), `tensor "a": unknown dtype "F8"`},
		{"dtype not string", rawFile(`{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, d8), `tensor "a": dtype must be a string, found number 4`},
		{"wrong size", rawFile(`{`+tensor("a", "F32", "[3]", "[0,8]")+`}`, d8), `tensor "a": data_offsets [0, 8] hold 8 bytes, but F32[3] needs 12`},
		{"wrong dtype size", rawFile(`{`+tensor("a", "BF16", "[2]", "[0,8]")+`}`, d8), `BF16[2] needs 4`},
		{"offsets out of bounds", rawFile(`{`+tensor("a", "F32", "[2]", "[0,8]")+`}`, d8[:4]), `tensor "a": data_offsets [0, 8] run past the data region (4 bytes)`},
		{"offsets reversed", rawFile(`{`+tensor("a", "F32", "[0]", "[8,0]")+`}`, d8), `end before they begin`},
		{"offsets three", rawFile(`{`+tensor("a", "F32", "[2]", "[0,8,8]")+`}`, d8), `data_offsets must be [begin, end], found 3`},
		{"offset negative", rawFile(`{`+tensor("a", "F32", "[2]", "[-8,0]")+`}`, d8), `data_offsets[0] is -8: must be non-negative`},
		{"overlap", rawFile(`{`+tensor("a", "F32", "[2]", "[0,8]")+`,`+tensor("b", "F32", "[2]", "[4,12]")+`}`, make([]byte, 12)),
			`tensor "b": data_offsets [4, 12] overlap tensor "a", which ends at 8`},
		{"same range", rawFile(`{`+tensor("a", "F32", "[2]", "[0,8]")+`,`+tensor("b", "F32", "[2]", "[0,8]")+`}`, d8), `overlap`},
		{"gap", rawFile(`{`+tensor("a", "F32", "[1]", "[0,4]")+`,`+tensor("b", "F32", "[1]", "[8,12]")+`}`, make([]byte, 12)),
			`tensor "b": gap of 4 bytes after tensor "a"`},
		{"gap at start", rawFile(`{`+tensor("a", "F32", "[1]", "[4,8]")+`}`, d8), `tensor "a": gap of 4 bytes at the start`},
		{"uncovered tail", rawFile(`{`+tensor("a", "F32", "[1]", "[0,4]")+`}`, d8), `4 bytes after the last tensor`},
		{"data but no tensors", rawFile(`{}`, d8), `8 bytes after the last tensor`},
		{"negative shape", rawFile(`{`+tensor("a", "F32", "[2,-1]", "[0,8]")+`}`, d8), `tensor "a": shape[1] is -1: must be non-negative`},
		{"fractional shape", rawFile(`{`+tensor("a", "F32", "[2.0]", "[0,8]")+`}`, d8), `shape[0] is 2.0: must be a non-negative integer`},
		{"shape of strings", rawFile(`{`+tensor("a", "F32", `["2"]`, "[0,8]")+`}`, d8), `shape[0] must be an integer, found string "2"`},
		{"shape not array", rawFile(`{`+tensor("a", "F32", `2`, "[0,8]")+`}`, d8), `shape must be an array of integers, found number 2`},
		{"shape overflow", rawFile(`{`+tensor("a", "F32", "[4294967296,4294967296,4294967296]", "[0,8]")+`}`, d8), `element count overflows`},
		{"byte size overflow", rawFile(`{`+tensor("a", "F64", "[1073741824,4294967296]", "[0,8]")+`}`, d8), `byte size overflows`},
		{"shape beyond uint64", rawFile(`{`+tensor("a", "F32", "[18446744073709551616]", "[0,8]")+`}`, d8), `below 2^64`},
		{"metadata non-string", rawFile(`{"__metadata__":{"format":"pt","n":1}}`, nil), `__metadata__: value of "n" must be a string, found number 1`},
		{"metadata nested", rawFile(`{"__metadata__":{"n":{}}}`, nil), `__metadata__: value of "n" must be a string, found an object`},
		{"metadata array", rawFile(`{"__metadata__":["a"]}`, nil), `__metadata__: must be an object of strings, found an array`},
		{"entry not object", rawFile(`{"a":[1]}`, nil), `tensor "a": entry must be an object, found an array`},
		{"missing dtype", rawFile(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, d8), `tensor "a": missing field "dtype"`},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, d8), `tensor "a": missing field "shape"`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[2]}}`, d8), `tensor "a": missing field "data_offsets"`},
		{"unknown field", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, d8), `tensor "a": unknown field "x"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, c.file)
			f, err := Open(path)
			if err == nil {
				f.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), path, "the error names the file")
		})
	}
}

func TestOpenMissingAndDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(filepath.Join(dir, "absent.safetensors"))
	require.ErrorContains(t, err, "absent.safetensors")
	_, err = Open(dir)
	require.ErrorContains(t, err, "not a regular file")
}

// Valid edge cases that a too-strict reader would refuse.
func TestValidEdgeCases(t *testing.T) {
	cases := map[string][]byte{
		"no tensors":          rawFile(`{}`, nil),
		"null metadata":       rawFile(`{"__metadata__":null}`, nil),
		"only metadata":       rawFile(`{"__metadata__":{"format":"pt"}}        `, nil),
		"empty at shared off": rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}}`, make([]byte, 4)),
		"whitespace header":   rawFile(" \n{ \"a\" : {\"dtype\":\"BOOL\",\"shape\":[ 1 ],\"data_offsets\":[0,1]} }\t", []byte{1}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := Open(writeTemp(t, b))
			require.NoError(t, err)
			require.NoError(t, f.Close())
		})
	}
}
