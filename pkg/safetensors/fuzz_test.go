package safetensors

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func fuzzCraft(header string, data int) []byte {
	b := make([]byte, 8, 8+len(header)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, data)...)
}

func FuzzParseHeader(f *testing.F) {
	// Seeds stay small: the fuzzer minimizes every new input, which is slow
	// for multi-kilobyte files such as the real adapters (covered by tests).
	var valid bytes.Buffer
	err := Write(&valid, []Tensor{
		{Name: "lora_A", DType: F32, Shape: []int{2, 2}, Data: EncodeF32([]float32{1, -2, 0.5, 3})},
		{Name: "lora_B", DType: BF16, Shape: []int{2}, Data: EncodeBF16([]float32{0.25, -1})},
		{Name: "h", DType: F16, Shape: []int{1}, Data: []byte{0x00, 0x3c}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Bytes())
	const t2 = `"dtype":"F32","shape":[2]`
	for _, seed := range [][]byte{
		fuzzCraft(`{"__metadata__":{"format":"pt"},"a":{`+t2+`,"data_offsets":[0,8]}}  `, 8),
		fuzzCraft(`{"a":{`+t2+`,"data_offsets":[0,8]},"b":{`+t2+`,"data_offsets":[4,12]}}`, 12),
		fuzzCraft(`{"a":{`+t2+`,"data_offsets":[4,12]}}`, 12),
		fuzzCraft(`{"a":{"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0),
		fuzzCraft(`{"a":{"dtype":"BF16","shape":[-1],"data_offsets":[0,2]},"a":{}}`, 2),
		fuzzCraft(`{"__metadata__":{"k":1}}`, 0),
		fuzzCraft(`{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, 8),
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{'},
		{1, 2, 3},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		size := int64(len(data))
		_, tensors, err := ParseHeader(bytes.NewReader(data), size, Options{MaxHeaderBytes: 1 << 20})
		if err != nil {
			return
		}
		var total int64
		for name, info := range tensors {
			if info.Offset < 8 || info.Offset+info.Len > size {
				t.Fatalf("%q outside the file: %+v", name, info)
			}
			if int64(info.NumElements())*int64(info.DType.Size()) != info.Len {
				t.Fatalf("%q length mismatch: %+v", name, info)
			}
			total += info.Len
		}
		if n := int64(binary.LittleEndian.Uint64(data)); 8+n+total != size {
			t.Fatalf("tensors cover %d bytes of %d", total, size-8-n)
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x","a":"y"}}`))
	f.Add([]byte(`{"weight_map":{"a":1}} x`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseIndex(data)
		if err != nil {
			return
		}
		for tensor, file := range m {
			if checkShardName(file) != nil {
				t.Fatalf("%q → unsafe shard %q accepted", tensor, file)
			}
		}
	})
}
