package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
)

// decodeObject unmarshals body, which must be a JSON object, into v and
// returns the object's members. Every failure is a 400 *Error. Unknown
// fields are ignored, as vLLM does.
func decodeObject(body []byte, v any) ([]member, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, BadRequest("", "request body is empty")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, jsonError(body, err)
	}
	if bytes.TrimSpace(body)[0] != '{' {
		return nil, BadRequest("", "request body must be a JSON object")
	}
	members, path, bad := inspect(body)
	if bad {
		if path == "" {
			return nil, BadRequest("", "request body is not valid UTF-8")
		}
		return nil, BadRequest(path, "%s is not valid UTF-8", path)
	}
	return members, nil
}

func jsonError(body []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return BadRequest("", "invalid JSON: %s (at byte offset %d)", syn.Error(), syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if !errors.As(err, &typ) {
		return BadRequest("", "invalid request body")
	}
	if typ.Field == "" {
		return BadRequest("", "request body must be a JSON object, got %s", typ.Value)
	}
	path, ok := pathAt(body, int(typ.Offset)-1)
	if !ok || typ.Offset == 0 {
		path = jsonField(typ.Field)
	}
	want := describe(typ.Type)
	if num, ok := strings.CutPrefix(typ.Value, "number "); ok {
		// encoding/json's words for a fraction given for an integer, or a
		// number out of range.
		why := "out of range"
		if want == "an integer" && strings.ContainsAny(num, ".eE") {
			why = "not an integer"
		}
		return BadRequest(path, "invalid value for `%s`: %s is %s", path, num, why)
	}
	return BadRequest(path, "invalid type for `%s`: expected %s, got %s", path, want, typ.Value)
}

// jsonField drops the names of embedded Go structs (capitalized, unlike
// every JSON name here) from a UnmarshalTypeError.Field.
func jsonField(field string) string {
	parts := strings.Split(field, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

// describer is implemented by types with a custom JSON shape.
type describer interface{ jsonShape() string }

var describerType = reflect.TypeFor[describer]()

func describe(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t.Implements(describerType) {
		return reflect.Zero(t).Interface().(describer).jsonShape()
	}
	if reflect.PointerTo(t).Implements(describerType) {
		return reflect.New(t).Interface().(describer).jsonShape()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return describe(t.Elem())
	default:
		return "an object"
	}
}

// shapeError is what the custom UnmarshalJSON methods return (encoding/json
// adds the field name); inner is the error of decoding data's elements.
func shapeError(data []byte, t reflect.Type, inner error) error {
	kind := jsonKind(data)
	var typ *json.UnmarshalTypeError
	if errors.As(inner, &typ) && kind == "array" {
		if num, ok := strings.CutPrefix(typ.Value, "number "); ok {
			kind = "an array holding " + num // a fraction or out of range
		} else {
			kind = "an array holding a " + typ.Value
		}
	}
	return &json.UnmarshalTypeError{Value: kind, Type: t}
}

func jsonKind(data []byte) string {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return "nothing"
	}
	switch data[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func isNull(raw []byte) bool { return string(bytes.TrimSpace(raw)) == "null" }

func missing(field string) error {
	return BadRequest(field, "`%s` is required", field)
}
