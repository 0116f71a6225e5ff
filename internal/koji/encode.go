package koji

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kwargs are keyword arguments of a call. Passed as the last argument of
// Call, they are encoded as Koji's trailing struct carrying "__starstar": true.
type Kwargs map[string]any

// Nil is an explicit XML-RPC <nil/> value, for positional arguments that
// must be sent as None.
var Nil any = nil

// dateTimeLayout is the XML-RPC dateTime.iso8601 layout.
const dateTimeLayout = "20060102T15:04:05"

// EncodeCall writes an XML-RPC methodCall for method with params to w.
// A trailing Kwargs parameter becomes Koji's __starstar struct.
func EncodeCall(w io.Writer, method string, params ...any) error {
	if err := checkXMLString(method); err != nil {
		return fmt.Errorf("xmlrpc: method name: %w", err)
	}
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}
	e.str(`<?xml version="1.0"?>` + "\n<methodCall><methodName>")
	e.escaped(method)
	e.str("</methodName><params>")
	for i, p := range params {
		if kw, ok := p.(Kwargs); ok && i == len(params)-1 {
			p = starstar(kw)
		}
		e.str("<param>")
		if err := e.value(p, 0); err != nil {
			return fmt.Errorf("xmlrpc: %s param %d: %w", method, i, err)
		}
		e.str("</param>")
	}
	e.str("</params></methodCall>\n")
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// EncodeResponse writes an XML-RPC methodResponse carrying v to w.
func EncodeResponse(w io.Writer, v any) error {
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}
	e.str(`<?xml version="1.0"?>` + "\n<methodResponse><params><param>")
	if err := e.value(v, 0); err != nil {
		return fmt.Errorf("xmlrpc: response: %w", err)
	}
	e.str("</param></params></methodResponse>\n")
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// EncodeFault writes an XML-RPC fault response for f to w.
func EncodeFault(w io.Writer, f *Fault) error {
	bw := bufio.NewWriter(w)
	e := &encoder{w: bw}
	e.str(`<?xml version="1.0"?>` + "\n<methodResponse><fault>")
	if err := e.value(map[string]any{"faultCode": int64(f.Code), "faultString": f.String}, 0); err != nil {
		return fmt.Errorf("xmlrpc: fault: %w", err)
	}
	e.str("</fault></methodResponse>\n")
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

func starstar(kw Kwargs) map[string]any {
	m := make(map[string]any, len(kw)+1)
	for k, v := range kw {
		m[k] = v
	}
	m["__starstar"] = true
	return m
}

// maxDepth bounds the nesting of arrays and structs, on both sides.
const maxDepth = 128

type encoder struct {
	w   *bufio.Writer
	err error
}

func (e *encoder) str(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

// escaped writes s as XML character data. \r is written as a character
// reference so that XML line-end normalisation does not turn it into \n.
func (e *encoder) escaped(s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var rep string
		switch s[i] {
		case '&':
			rep = "&amp;"
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '\r':
			rep = "&#13;"
		default:
			continue
		}
		e.str(s[last:i])
		e.str(rep)
		last = i + 1
	}
	e.str(s[last:])
}

// checkXMLString reports whether s can be carried in an XML document.
func checkXMLString(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
		if !isXMLChar(r) {
			return fmt.Errorf("character %U at byte %d is not allowed in XML", r, i)
		}
	}
	return nil
}

// isXMLChar reports whether r is a Char of XML 1.0.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		(r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) ||
		(r >= 0x10000 && r <= 0x10FFFF)
}

var timeType = reflect.TypeFor[time.Time]()

func (e *encoder) value(v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nesting deeper than %d", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.str("<value><nil/></value>")
		return nil
	case string:
		if err := checkXMLString(x); err != nil {
			return err
		}
		e.str("<value><string>")
		e.escaped(x)
		e.str("</string></value>")
		return nil
	case bool:
		if x {
			e.str("<value><boolean>1</boolean></value>")
		} else {
			e.str("<value><boolean>0</boolean></value>")
		}
		return nil
	case int:
		e.int(int64(x))
		return nil
	case int64:
		e.int(x)
		return nil
	case float64:
		return e.float(x)
	case []byte:
		if x == nil {
			e.str("<value><nil/></value>")
			return nil
		}
		e.str("<value><base64>")
		if e.err == nil {
			enc := base64.NewEncoder(base64.StdEncoding, e.w)
			_, e.err = enc.Write(x)
			if e.err == nil {
				e.err = enc.Close()
			}
		}
		e.str("</base64></value>")
		return nil
	case time.Time:
		e.str("<value><dateTime.iso8601>" + x.Format(dateTimeLayout) + "</dateTime.iso8601></value>")
		return nil
	case *big.Int:
		if x == nil {
			e.str("<value><nil/></value>")
			return nil
		}
		if !x.IsInt64() {
			return fmt.Errorf("integer %s does not fit in 64 bits", x)
		}
		e.int(x.Int64())
		return nil
	case Kwargs:
		return e.value(map[string]any(x), depth)
	case map[string]any:
		return e.mapAny(x, depth)
	case []any:
		e.str("<value><array><data>")
		for i, el := range x {
			if err := e.value(el, depth+1); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		e.str("</data></array></value>")
		return nil
	}
	return e.reflectValue(reflect.ValueOf(v), depth)
}

func (e *encoder) int(i int64) {
	if i > math.MaxInt32 || i < math.MinInt32 {
		e.str("<value><i8>" + strconv.FormatInt(i, 10) + "</i8></value>")
		return
	}
	e.str("<value><int>" + strconv.FormatInt(i, 10) + "</int></value>")
}

func (e *encoder) float(f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("double %v cannot be encoded", f)
	}
	e.str("<value><double>" + strconv.FormatFloat(f, 'g', -1, 64) + "</double></value>")
	return nil
}

func (e *encoder) mapAny(m map[string]any, depth int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.str("<value><struct>")
	for _, k := range keys {
		if err := e.member(k, m[k], depth); err != nil {
			return err
		}
	}
	e.str("</struct></value>")
	return nil
}

func (e *encoder) member(name string, v any, depth int) error {
	if err := checkXMLString(name); err != nil {
		return fmt.Errorf("struct member name %q: %w", name, err)
	}
	e.str("<member><name>")
	e.escaped(name)
	e.str("</name>")
	if err := e.value(v, depth+1); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	e.str("</member>")
	return nil
}

func (e *encoder) reflectValue(rv reflect.Value, depth int) error {
	switch rv.Kind() {
	case reflect.Invalid:
		e.str("<value><nil/></value>")
		return nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.str("<value><nil/></value>")
			return nil
		}
		return e.value(rv.Elem().Interface(), depth)
	case reflect.Bool:
		return e.value(rv.Bool(), depth)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.int(rv.Int())
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := rv.Uint()
		if u > math.MaxInt64 {
			return fmt.Errorf("integer %d does not fit in 64 bits", u)
		}
		e.int(int64(u))
		return nil
	case reflect.Float32, reflect.Float64:
		return e.float(rv.Float())
	case reflect.String:
		return e.value(rv.String(), depth)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.str("<value><nil/></value>")
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 && rv.Kind() == reflect.Slice {
			return e.value(rv.Bytes(), depth)
		}
		e.str("<value><array><data>")
		for i := range rv.Len() {
			if err := e.value(rv.Index(i).Interface(), depth+1); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		e.str("</data></array></value>")
		return nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("map key type %s is not a string", rv.Type().Key())
		}
		if rv.IsNil() {
			e.str("<value><nil/></value>")
			return nil
		}
		m := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			m[it.Key().String()] = it.Value().Interface()
		}
		return e.mapAny(m, depth)
	case reflect.Struct:
		if rv.Type() == timeType {
			return e.value(rv.Interface(), depth)
		}
		return e.structValue(rv, depth)
	}
	return fmt.Errorf("cannot encode Go type %s", rv.Type())
}

// structValue encodes a struct as an XML-RPC struct, naming members by their
// json tag (so one struct serves JSON metadata and XML-RPC alike).
func (e *encoder) structValue(rv reflect.Value, depth int) error {
	t := rv.Type()
	type field struct {
		name string
		v    any
	}
	var fields []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		fv := rv.Field(i)
		if strings.Contains(opts, "omitempty") && fv.IsZero() {
			continue
		}
		fields = append(fields, field{name, fv.Interface()})
	}
	slices.SortFunc(fields, func(a, b field) int { return strings.Compare(a.name, b.name) })
	e.str("<value><struct>")
	for _, f := range fields {
		if err := e.member(f.name, f.v, depth); err != nil {
			return err
		}
	}
	e.str("</struct></value>")
	return nil
}
