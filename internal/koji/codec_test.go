package koji

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	big1, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	_ = big1
	allChars := "tab\t nl\n cr\r crlf\r\n amp& lt< gt> quot\" apos' é € 😀 \u2028 \ufffd"
	tests := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"int", 42, int64(42)},
		{"negative", -7, int64(-7)},
		{"int32 max", int64(2147483647), int64(2147483647)},
		{"i8", int64(1) << 40, int64(1) << 40},
		{"i8 min", int64(-1) << 63, int64(-1) << 63},
		{"uint", uint32(5), int64(5)},
		{"double", 3.25, 3.25},
		{"double tiny", 1e-300, 1e-300},
		{"bool true", true, true},
		{"bool false", false, false},
		{"string", "hello", "hello"},
		{"empty string", "", ""},
		{"all XML chars", allChars, allChars},
		{"base64", []byte{0, 1, 2, 255}, []byte{0, 1, 2, 255}},
		{"empty base64", []byte{}, []byte{}},
		{"datetime", time.Date(2026, 11, 22, 3, 3, 2, 0, time.UTC), time.Date(2026, 11, 22, 3, 3, 2, 0, time.UTC)},
		{"array", []any{1, "a", nil}, []any{int64(1), "a", nil}},
		{"empty array", []string{}, []any{}},
		{"struct", map[string]any{"a": 1, "b": []int{2}}, map[string]any{"a": int64(1), "b": []any{int64(2)}}},
		{"go struct", struct {
			Name  string `json:"name"`
			Skip  string `json:"-"`
			Empty string `json:"empty,omitempty"`
			N     *int   `json:"n"`
		}{Name: "x", Skip: "y"}, map[string]any{"name": "x", "n": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := EncodeResponse(&buf, tt.in); err != nil {
				t.Fatalf("EncodeResponse: %v", err)
			}
			got, err := DecodeResponse(&buf)
			if err != nil {
				t.Fatalf("DecodeResponse(%s): %v", buf.String(), err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEncodeCallKwargs(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodeCall(&buf, "getBuild", 123, Kwargs{"strict": true}); err != nil {
		t.Fatal(err)
	}
	method, params, err := DecodeCall(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if method != "getBuild" {
		t.Errorf("method = %q", method)
	}
	want := []any{int64(123), map[string]any{"strict": true, "__starstar": true}}
	if !reflect.DeepEqual(params, want) {
		t.Errorf("params = %#v, want %#v", params, want)
	}
	args, kw := SplitKwargs(params)
	if !reflect.DeepEqual(args, []any{int64(123)}) || !reflect.DeepEqual(kw, Kwargs{"strict": true}) {
		t.Errorf("SplitKwargs = %#v, %#v", args, kw)
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"control char", "a\x01b", "character U+0001"},
		{"invalid utf8", "a\xffb", "invalid UTF-8"},
		{"fffe", "\ufffe", "U+FFFE"},
		{"nested field", map[string]any{"build": map[string]any{"name": "\x00"}}, "build: name: character U+0000"},
		{"too big", new(big.Int).Lsh(big.NewInt(1), 70), "does not fit in 64 bits"},
		{"uint64", uint64(1) << 63, "does not fit in 64 bits"},
		{"channel", make(chan int), "cannot encode Go type chan int"},
		{"int map", map[int]string{1: "a"}, "map key type int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := EncodeCall(&bytes.Buffer{}, "m", tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeKojiDialect(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want any
	}{
		{"untyped string", `<methodResponse><params><param><value> a b </value></param></params></methodResponse>`, " a b "},
		{"empty value", `<methodResponse><params><param><value></value></param></params></methodResponse>`, ""},
		{"i4", `<methodResponse><params><param><value><i4>-3</i4></value></param></params></methodResponse>`, int64(-3)},
		{"whitespace", "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><int>1</int></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n", []any{int64(1)}},
		{"big", `<methodResponse><params><param><value><i8>123456789012345678901234567890</i8></value></param></params></methodResponse>`, mustBig("123456789012345678901234567890")},
		{"cr reference", `<methodResponse><params><param><value><string>a&#13;b&#xD;</string></value></param></params></methodResponse>`, "a\rb\r"},
		{"base64 lines", "<methodResponse><params><param><value><base64>AAEC\n/w==\n</base64></value></param></params></methodResponse>", []byte{0, 1, 2, 255}},
		{"nil", `<methodResponse><params><param><value><nil/></value></param></params></methodResponse>`, nil},
		{"struct", `<methodResponse><params><param><value><struct><member><name>session-id</name><value><int>7</int></value></member></struct></value></param></params></methodResponse>`, map[string]any{"session-id": int64(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResponse(strings.NewReader(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func mustBig(s string) *big.Int {
	b, _ := new(big.Int).SetString(s, 10)
	return b
}

func TestDecodeMalformed(t *testing.T) {
	docs := map[string]string{
		"empty":       ``,
		"truncated":   `<methodResponse><params><param><value><int>1</int>`,
		"bad int":     `<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>`,
		"bad bool":    `<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>`,
		"bad base64":  `<methodResponse><params><param><value><base64>!!</base64></value></param></params></methodResponse>`,
		"unknown":     `<methodResponse><params><param><value><float>1</float></value></param></params></methodResponse>`,
		"mixed":       `<methodResponse><params><param><value>x<int>1</int></value></param></params></methodResponse>`,
		"fault shape": `<methodResponse><fault><value><string>x</string></value></fault></methodResponse>`,
		"trailing":    `<methodResponse><params><param><value>a</value></param></params></methodResponse><x/>`,
		"deep":        `<methodResponse><params><param>` + strings.Repeat(`<value><array><data>`, 200) + `</param></params></methodResponse>`,
		"bad char":    "<methodResponse><params><param><value>\x01</value></param></params></methodResponse>",
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeResponse(strings.NewReader(doc))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodeFault(&buf, &Fault{Code: CodeAuthExpired, String: `session "1" has expired`}); err != nil {
		t.Fatal(err)
	}
	_, err := DecodeResponse(&buf)
	tests := []struct {
		target error
		want   bool
	}{
		{ErrAuthExpired, true},
		{ErrAuth, true},
		{ErrGeneric, true},
		{ErrSequence, false},
		{ErrUnknownFault, false},
		{&Fault{Code: CodeAuthExpired, String: `session "1" has expired`}, true},
		{&Fault{Code: CodeAuthExpired, String: "other"}, false},
	}
	for _, tt := range tests {
		if got := errors.Is(err, tt.target); got != tt.want {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", err, tt.target, got, tt.want)
		}
	}
	var f *Fault
	if !errors.As(err, &f) || f.Code != 1007 || FaultName(f.Code) != "AuthExpired" {
		t.Errorf("errors.As: %#v", f)
	}
	if got := (&Fault{Code: 4242, String: "x"}).Error(); got != "koji: Fault (fault 4242): x" {
		t.Errorf("unknown code: %q", got)
	}
	if errors.Is(&Fault{Code: 1}, ErrGeneric) {
		t.Error("code 1 must not be a GenericError")
	}
	for code := CodeGeneric; code <= CodeNameValidation; code++ {
		if !errors.Is(&Fault{Code: code}, ErrGeneric) {
			t.Errorf("code %d is not a GenericError", code)
		}
		if FaultName(code) == "Fault" {
			t.Errorf("code %d has no name", code)
		}
	}
}

// FuzzDecodeResponse checks that the decoder never panics, and that whatever
// it accepts survives an encode/decode round trip unchanged.
func FuzzDecodeResponse(f *testing.F) {
	seeds := []string{
		`<methodResponse><params><param><value><struct><member><name>a</name><value><array><data><value><i8>9999999999</i8></value><value><nil/></value><value><double>1.5</double></value><value><boolean>1</boolean></value><value><base64>AAE=</base64></value><value><dateTime.iso8601>20261122T03:03:02</dateTime.iso8601></value></data></array></value></member></struct></value></param></params></methodResponse>`,
		`<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1000</int></value></member><member><name>faultString</name><value><string>No such build</string></value></member></struct></value></fault></methodResponse>`,
		`<methodResponse><params><param><value>a&#13;&amp;b</value></param></params></methodResponse>`,
		`<?xml version="1.0" encoding="UTF-8"?><methodResponse><params><param><value><i8>123456789012345678901234567890</i8></value></param></params></methodResponse>`,
		`<methodResponse><params><param><value><array><data><value><array><data></data></array></value></data></array></value></param></params></methodResponse>`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := DecodeResponse(bytes.NewReader(doc))
		if err != nil {
			var fault *Fault
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &fault) {
				t.Fatalf("error is neither malformed nor a fault: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := EncodeResponse(&buf, v); err != nil {
			// Doubles like 1e400 decode to Inf and cannot be re-encoded.
			return
		}
		v2, err := DecodeResponse(&buf)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", buf.String(), err)
		}
		if !equalValues(v, v2) {
			t.Fatalf("round trip changed %#v into %#v", v, v2)
		}
	})
}

// equalValues compares decoded values; times compare by instant.
func equalValues(a, b any) bool {
	switch x := a.(type) {
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Format(dateTimeLayout) == y.Format(dateTimeLayout)
	case *big.Int:
		y, ok := b.(*big.Int)
		if ok {
			return x.Cmp(y) == 0
		}
		return false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValues(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !equalValues(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// FuzzDecodeCall checks the methodCall decoder (the hub side of kojitest and
// the request stored in a task) never panics and round-trips what it accepts.
func FuzzDecodeCall(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><methodCall><methodName>getBuild</methodName><params><param><value><int>123</int></value></param><param><value><struct><member><name>strict</name><value><boolean>1</boolean></value></member><member><name>__starstar</name><value><boolean>1</boolean></value></member></struct></value></param></params></methodCall>`))
	f.Add([]byte(`<methodCall><methodName>echo</methodName></methodCall>`))
	f.Add([]byte(`<methodCall><methodName>multiCall</methodName><params><param><value><array><data><value><struct><member><name>methodName</name><value>getKojiVersion</value></member><member><name>params</name><value><array><data/></array></value></member></struct></value></data></array></value></param></params></methodCall>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		method, params, err := DecodeCall(bytes.NewReader(doc))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := EncodeCall(&buf, method, params...); err != nil {
			return // e.g. Inf doubles, names with characters XML cannot carry
		}
		m2, p2, err := DecodeCall(&buf)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", buf.String(), err)
		}
		if m2 != method || !equalValues(params, p2) {
			t.Fatalf("round trip changed %q %#v into %q %#v", method, params, m2, p2)
		}
	})
}

func TestDecodeLargeBase64(t *testing.T) {
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var lines strings.Builder
	for i := 0; i < len(enc); i += 76 {
		lines.WriteString(enc[i:min(i+76, len(enc))])
		lines.WriteString("\r\n")
	}
	doc := "<methodResponse><params><param><value><base64>" + lines.String() + "</base64></value></param></params></methodResponse>"
	v, err := DecodeResponse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.([]byte), data) {
		t.Error("large base64 value differs")
	}
	if _, err := DecodeResponse(strings.NewReader("<methodResponse><params><param><value><base64>AAE</base64></value></param></params></methodResponse>")); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated base64: %v", err)
	}
}
