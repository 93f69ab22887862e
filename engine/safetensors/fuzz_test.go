package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open through a real file (and so the
// mmap path). Whatever it accepts must be fully usable and survive a rewrite
// with Write unchanged.
func FuzzOpen(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "f.safetensors")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sf, err := Open(path)
		if err != nil {
			if sf != nil {
				t.Fatal("non-nil File with an error")
			}
			return
		}
		defer sf.Close()
		tensors, ok := checkAccepted(t, sf, len(b))
		if !ok {
			return
		}
		out := filepath.Join(dir, "g.safetensors")
		if err := Write(out, tensors, sf.Metadata()); err != nil {
			t.Fatalf("Write refuses what Open accepted: %v", err)
		}
		g, err := Open(out)
		if err != nil {
			t.Fatalf("Open refuses what Write wrote: %v", err)
		}
		defer g.Close()
		checkSame(t, g, tensors)
	})
}

// FuzzParse is FuzzOpen without the file system, so it runs many times
// faster over the same parser; the rewrite goes through header() in memory.
func FuzzParse(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 8 {
			return // Open rejects these before parsing
		}
		sf, err := parseFile("mem", b)
		if err != nil {
			return
		}
		tensors, ok := checkAccepted(t, sf, len(b))
		if !ok {
			return
		}
		if err := checkTensors(tensors); err != nil {
			t.Fatalf("Write refuses what Open accepted: %v", err)
		}
		hdr, err := header(tensors, sf.Metadata())
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
		out = append(out, hdr...)
		for _, td := range tensors {
			out = append(out, td.Data...)
		}
		g, err := parseFile("mem2", out)
		if err != nil {
			t.Fatalf("parse refuses what Write would write: %v", err)
		}
		checkSame(t, g, tensors)
	})
}

// checkAccepted touches every tensor of an accepted file and checks that the
// tensors exactly cover the data region. It returns them for a rewrite, and
// false where Write would refuse the metadata by design.
func checkAccepted(t *testing.T, sf *File, fileLen int) ([]TensorData, bool) {
	t.Helper()
	var covered int64
	var tensors []TensorData
	for _, name := range sf.Names() {
		info, ok := sf.Tensor(name)
		if !ok {
			t.Fatalf("Names lists %q but Tensor does not find it", name)
		}
		raw, err := sf.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(raw)) != info.Size || info.Size != int64(info.NumElements()*info.DType.Size()) {
			t.Fatalf("%q: %d bytes, Info %+v", name, len(raw), info)
		}
		if info.Offset != sf.dataStart+covered {
			t.Fatalf("%q at %d, want %d: tensors do not tile the data", name, info.Offset, sf.dataStart+covered)
		}
		covered += info.Size
		dst := make([]float32, info.NumElements())
		err = sf.Float32(name, dst)
		isFloat := info.DType == F32 || info.DType == BF16 || info.DType == F16
		if (err == nil) != isFloat {
			t.Fatalf("%q (%s): Float32 error %v", name, info.DType, err)
		}
		tensors = append(tensors, TensorData{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	if sf.dataStart+covered != int64(fileLen) {
		t.Fatalf("tensors cover %d bytes from %d, file is %d", covered, sf.dataStart, fileLen)
	}
	if f, ok := sf.Metadata()["format"]; ok && f != "pt" {
		return nil, false
	}
	return tensors, true
}

func checkSame(t *testing.T, g *File, tensors []TensorData) {
	t.Helper()
	if len(g.Names()) != len(tensors) {
		t.Fatalf("rewrite has %d tensors, want %d", len(g.Names()), len(tensors))
	}
	for _, td := range tensors {
		info, ok := g.Tensor(td.Name)
		gb, err := g.Bytes(td.Name)
		if !ok || err != nil || !bytes.Equal(gb, td.Data) || info.DType != td.DType || len(info.Shape) != len(td.Shape) {
			t.Fatalf("%q differs after rewrite (%v)", td.Name, err)
		}
	}
}

// fuzzSeeds are valid files from Write, one per dtype and shape kind, and
// hand-made files near the validation rules.
func fuzzSeeds(tb testing.TB) [][]byte {
	dir := tb.TempDir()
	write := func(tensors []TensorData, meta map[string]string) []byte {
		path := filepath.Join(dir, "s.safetensors")
		if err := Write(path, tensors, meta); err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	a, _ := FromFloat32("a", BF16, []int{2, 1}, []float32{1, -2})
	c, _ := FromFloat32("c", F16, []int{}, []float32{0.5})
	e, _ := FromFloat32("e", F32, []int{0}, nil)
	w, _ := FromFloat32("model.layers.0.self_attn.q_proj.weight", F32, []int{2, 2}, []float32{1, 2, 3, 4})
	u := TensorData{Name: "u", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}}
	var others []TensorData
	for _, dt := range []DType{F64, I64, I32, I16, I8, BOOL} {
		others = append(others, TensorData{Name: "t" + string(dt), DType: dt, Shape: []int{1, 1}, Data: make([]byte, dt.Size())})
	}
	return [][]byte{
		write([]TensorData{a, e, u, c}, map[string]string{"k": "v"}),
		write([]TensorData{w}, nil),
		write(others, nil),
		write(nil, nil),
		rawFile(`{}`, nil),
		rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}`, make([]byte, 8)),
		rawFile(`{"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"z":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}}`, make([]byte, 8)),
		rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[4,12]}}`, make([]byte, 12)),
		rawFile(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8)),
		rawFile(`{"__metadata__":{"n":1}}`, nil),
		rawFile(`{"__metadata__":null}`, nil),
		rawFile(`[]`, nil),
		{8, 0, 0, 0, 0, 0, 0, 0, '{', '}'},
	}
}
