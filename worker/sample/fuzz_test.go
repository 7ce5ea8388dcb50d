package sample

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzSample feeds arbitrary logits (NaN and ±Inf included) and parameters, valid or not,
// and checks that Sample never panics and always returns a token of the vocabulary.
func FuzzSample(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64}, 1.0, 0.9, 0.1, 1.2, int8(3), uint8(2), int64(1))
	f.Add([]byte{0, 0, 128, 127, 0, 0, 128, 255, 0, 0, 192, 127}, 0.0, 1.0, 0.0, 1.0, int8(0), uint8(0), int64(0))
	f.Add([]byte{0, 0, 128, 255, 0, 0, 128, 255}, 0.5, 0.0, 2.0, -1.0, int8(-5), uint8(9), int64(-1))
	f.Fuzz(func(t *testing.T, raw []byte, temp, topP, minP, rep float64, topK int8, minTok uint8, sd int64) {
		logits := make([]float32, len(raw)/4)
		for i := range logits {
			logits[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		p := Params{
			Temperature: temp, TopP: topP, MinP: minP, RepetitionPenalty: rep,
			TopK: int(topK), MinTokens: int(minTok), Seed: &sd, Logprobs: int(minTok%4) - 1,
			FrequencyPenalty: temp - 1, PresencePenalty: topP,
			LogitBias:    map[int]float64{0: minP, int(topK): rep, -3: 1},
			StopTokenIDs: []int{int(minTok), -1, 1 << 30},
		}
		s := New(p, []int{1, len(logits)})
		history := []int{0, int(topK), -7, len(logits) + 3}
		for range 3 {
			r := s.Sample(logits, history, history)
			if len(logits) == 0 {
				if r.Token != -1 {
					t.Fatalf("empty logits gave token %d", r.Token)
				}
				return
			}
			if r.Token < 0 || r.Token >= len(logits) {
				t.Fatalf("token %d outside vocabulary of %d", r.Token, len(logits))
			}
			history = append(history, r.Token)
		}
	})
}
