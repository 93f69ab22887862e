package safetensors

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to Open. Whatever it accepts must be fully
// usable (every tensor's bytes and floats readable, the data region exactly
// covered) and must survive a rewrite with Write unchanged.
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
			covered += info.Size
			dst := make([]float32, info.NumElements())
			err = sf.Float32(name, dst)
			isFloat := info.DType == F32 || info.DType == BF16 || info.DType == F16
			if (err == nil) != isFloat {
				t.Fatalf("%q (%s): Float32 error %v", name, info.DType, err)
			}
			tensors = append(tensors, TensorData{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
		}
		first := int64(len(b)) - covered
		if len(tensors) > 0 {
			info, _ := sf.Tensor(tensors[0].Name)
			if info.Offset != first {
				t.Fatalf("tensors cover %d bytes but start at %d in a %d-byte file", covered, info.Offset, len(b))
			}
		}
		meta := sf.Metadata()
		if f, ok := meta["format"]; ok && f != "pt" {
			return // Write only produces "pt" files
		}
		out := filepath.Join(dir, "g.safetensors")
		if err := Write(out, tensors, meta); err != nil {
			t.Fatalf("Write refuses what Open accepted: %v", err)
		}
		g, err := Open(out)
		if err != nil {
			t.Fatalf("Open refuses what Write wrote: %v", err)
		}
		defer g.Close()
		if len(g.Names()) != len(tensors) {
			t.Fatalf("rewrite has %d tensors, want %d", len(g.Names()), len(tensors))
		}
		for _, td := range tensors {
			gb, err := g.Bytes(td.Name)
			if err != nil || string(gb) != string(td.Data) {
				t.Fatalf("%q differs after rewrite (%v)", td.Name, err)
			}
		}
	})
}

// fuzzSeeds are valid files from Write and the malformed cases' shapes.
func fuzzSeeds(tb testing.TB) [][]byte {
	dir := tb.TempDir()
	path := filepath.Join(dir, "s.safetensors")
	a, _ := FromFloat32("a", BF16, []int{2, 1}, []float32{1, -2})
	c, _ := FromFloat32("c", F16, []int{}, []float32{0.5})
	e, _ := FromFloat32("e", F32, []int{0}, nil)
	u := TensorData{Name: "u", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}}
	if err := Write(path, []TensorData{a, e, u, c}, map[string]string{"k": "v"}); err != nil {
		tb.Fatal(err)
	}
	valid, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{
		valid,
		rawFile(`{}`, nil),
		rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}`, make([]byte, 8)),
		rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[4,12]}}`, make([]byte, 12)),
		rawFile(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, make([]byte, 8)),
		rawFile(`{"__metadata__":{"n":1}}`, nil),
		rawFile(`[]`, nil),
		{8, 0, 0, 0, 0, 0, 0, 0, '{', '}'},
	}
}
