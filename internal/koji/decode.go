package koji

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed is wrapped by every error about an XML-RPC document that
// cannot be decoded.
var ErrMalformed = errors.New("malformed XML-RPC")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// DecodeResponse reads one XML-RPC methodResponse from r. A fault response is
// returned as a *Fault error. Values decode to nil, int64 (or *big.Int beyond
// 64 bits), float64, bool, string, []byte, time.Time, []any and
// map[string]any.
func DecodeResponse(r io.Reader) (any, error) {
	d := newXMLDecoder(r)
	if err := d.expectStart("methodResponse"); err != nil {
		return nil, err
	}
	se, err := d.nextStart()
	if err != nil {
		return nil, err
	}
	switch se.Name.Local {
	case "params":
		if err := d.expectStart("param"); err != nil {
			return nil, err
		}
		v, err := d.valueElem(0)
		if err != nil {
			return nil, err
		}
		if err := d.expectEnd("param"); err != nil {
			return nil, err
		}
		if err := d.expectEnd("params"); err != nil {
			return nil, err
		}
		if err := d.expectEnd("methodResponse"); err != nil {
			return nil, err
		}
		return v, d.expectEOF()
	case "fault":
		v, err := d.valueElem(0)
		if err != nil {
			return nil, err
		}
		if err := d.expectEnd("fault"); err != nil {
			return nil, err
		}
		if err := d.expectEnd("methodResponse"); err != nil {
			return nil, err
		}
		if err := d.expectEOF(); err != nil {
			return nil, err
		}
		f, err := faultFromValue(v)
		if err != nil {
			return nil, err
		}
		return nil, f
	}
	return nil, malformed("unexpected <%s> in methodResponse", se.Name.Local)
}

// faultFromValue turns a {faultCode, faultString} struct into a *Fault.
func faultFromValue(v any) (*Fault, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, malformed("fault value is %T, not a struct", v)
	}
	code, ok := m["faultCode"].(int64)
	if !ok {
		return nil, malformed("fault has no integer faultCode")
	}
	s, ok := m["faultString"].(string)
	if !ok {
		return nil, malformed("fault has no string faultString")
	}
	return &Fault{Code: int(code), String: s}, nil
}

// DecodeCall reads one XML-RPC methodCall from r.
func DecodeCall(r io.Reader) (method string, params []any, err error) {
	d := newXMLDecoder(r)
	if err := d.expectStart("methodCall"); err != nil {
		return "", nil, err
	}
	if err := d.expectStart("methodName"); err != nil {
		return "", nil, err
	}
	method, err = d.text("methodName")
	if err != nil {
		return "", nil, err
	}
	method = strings.TrimSpace(method)
	if method == "" {
		return "", nil, malformed("empty methodName")
	}
	tok, err := d.nextSignificant()
	if err != nil {
		return "", nil, err
	}
	if end, ok := tok.(xml.EndElement); ok && end.Name.Local == "methodCall" {
		return method, nil, d.expectEOF()
	}
	if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != "params" {
		return "", nil, malformed("expected <params> in methodCall")
	}
	params = []any{}
	for {
		tok, err := d.nextSignificant()
		if err != nil {
			return "", nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if err := d.expectEnd("methodCall"); err != nil {
				return "", nil, err
			}
			return method, params, d.expectEOF()
		case xml.StartElement:
			if t.Name.Local != "param" {
				return "", nil, malformed("unexpected <%s> in params", t.Name.Local)
			}
			v, err := d.valueElem(0)
			if err != nil {
				return "", nil, err
			}
			if err := d.expectEnd("param"); err != nil {
				return "", nil, err
			}
			params = append(params, v)
		}
	}
}

// SplitKwargs removes a trailing __starstar struct from params and returns it
// (without the marker) as keyword arguments.
func SplitKwargs(params []any) ([]any, Kwargs) {
	if len(params) == 0 {
		return params, nil
	}
	m, ok := params[len(params)-1].(map[string]any)
	if !ok || m["__starstar"] != true {
		return params, nil
	}
	kw := Kwargs{}
	for k, v := range m {
		if k != "__starstar" {
			kw[k] = v
		}
	}
	return params[:len(params)-1], kw
}

type xmlDecoder struct {
	d *xml.Decoder
}

func newXMLDecoder(r io.Reader) *xmlDecoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = func(charset string, input io.Reader) (io.Reader, error) {
		if strings.EqualFold(charset, "utf-8") || strings.EqualFold(charset, "us-ascii") {
			return input, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", charset)
	}
	return &xmlDecoder{d: d}
}

func (x *xmlDecoder) token() (xml.Token, error) {
	tok, err := x.d.Token()
	if err == io.EOF {
		return nil, malformed("unexpected end of document")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return tok, nil
}

// nextSignificant returns the next start or end element, skipping
// whitespace, comments, processing instructions and directives.
func (x *xmlDecoder) nextSignificant() (xml.Token, error) {
	for {
		tok, err := x.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, malformed("unexpected text %q", truncate(string(t)))
			}
		}
	}
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (x *xmlDecoder) nextStart() (xml.StartElement, error) {
	tok, err := x.nextSignificant()
	if err != nil {
		return xml.StartElement{}, err
	}
	se, ok := tok.(xml.StartElement)
	if !ok {
		return xml.StartElement{}, malformed("unexpected </%s>", tok.(xml.EndElement).Name.Local)
	}
	return se, nil
}

func (x *xmlDecoder) expectStart(name string) error {
	se, err := x.nextStart()
	if err != nil {
		return err
	}
	if se.Name.Local != name {
		return malformed("expected <%s>, found <%s>", name, se.Name.Local)
	}
	return nil
}

func (x *xmlDecoder) expectEnd(name string) error {
	tok, err := x.nextSignificant()
	if err != nil {
		return err
	}
	ee, ok := tok.(xml.EndElement)
	if !ok || ee.Name.Local != name {
		return malformed("expected </%s>", name)
	}
	return nil
}

func (x *xmlDecoder) expectEOF() error {
	for {
		tok, err := x.d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return malformed("text after the document")
			}
		case xml.Comment, xml.ProcInst:
		default:
			return malformed("content after the document")
		}
	}
}

// text reads character data up to the end of the element named name.
func (x *xmlDecoder) text(name string) (string, error) {
	var sb strings.Builder
	for {
		tok, err := x.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			sb.Write(t)
		case xml.EndElement:
			return sb.String(), nil
		case xml.StartElement:
			return "", malformed("unexpected <%s> in <%s>", t.Name.Local, name)
		}
	}
}

// base64Body decodes base64 text as the parser hands it over, so the
// encoded form is not copied again: only the parser's buffer and the
// decoded bytes are held.
func (x *xmlDecoder) base64Body() ([]byte, error) {
	out := []byte{}
	scratch := make([]byte, 0, 64<<10) // whitespace-free encoded text, bounded
	flush := func(final bool) error {
		full := len(scratch) / 4 * 4
		if final && full != len(scratch) {
			return malformed("base64: %d trailing characters", len(scratch)-full)
		}
		if full == 0 {
			return nil
		}
		start := len(out)
		out = append(out, make([]byte, base64.StdEncoding.DecodedLen(full))...)
		n, err := base64.StdEncoding.Decode(out[start:], scratch[:full])
		if err != nil {
			return malformed("base64: %v", err)
		}
		out = out[:start+n]
		scratch = append(scratch[:0], scratch[full:]...)
		return nil
	}
	for {
		tok, err := x.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			for _, c := range t {
				switch c {
				case ' ', '\t', '\n', '\r':
					continue
				}
				scratch = append(scratch, c)
				if len(scratch) == cap(scratch) {
					if err := flush(false); err != nil {
						return nil, err
					}
				}
			}
		case xml.EndElement:
			if err := flush(true); err != nil {
				return nil, err
			}
			return out, nil
		case xml.StartElement:
			return nil, malformed("unexpected <%s> in <base64>", t.Name.Local)
		}
	}
}

// valueElem reads a <value> element, start to end.
func (x *xmlDecoder) valueElem(depth int) (any, error) {
	if err := x.expectStart("value"); err != nil {
		return nil, err
	}
	return x.valueBody(depth)
}

// valueBody reads the content of a <value> element after its start tag.
func (x *xmlDecoder) valueBody(depth int) (any, error) {
	if depth > maxDepth {
		return nil, malformed("nesting deeper than %d", maxDepth)
	}
	var text strings.Builder
	for {
		tok, err := x.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			// <value>text</value> is a string.
			return text.String(), nil
		case xml.StartElement:
			if len(strings.TrimSpace(text.String())) != 0 {
				return nil, malformed("text mixed with <%s> in <value>", t.Name.Local)
			}
			v, err := x.typed(t.Name.Local, depth)
			if err != nil {
				return nil, err
			}
			if err := x.expectEnd("value"); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

func (x *xmlDecoder) typed(name string, depth int) (any, error) {
	switch name {
	case "nil":
		if err := x.expectEnd("nil"); err != nil {
			return nil, err
		}
		return nil, nil
	case "string":
		return x.text(name)
	case "int", "i4", "i8", "i1", "i2":
		s, err := x.text(name)
		if err != nil {
			return nil, err
		}
		return parseInt(name, s)
	case "boolean":
		s, err := x.text(name)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, malformed("boolean %q is not 0 or 1", truncate(s))
	case "double":
		s, err := x.text(name)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, malformed("double %q: %v", truncate(s), err)
		}
		return f, nil
	case "base64":
		return x.base64Body()
	case "dateTime.iso8601":
		s, err := x.text(name)
		if err != nil {
			return nil, err
		}
		return parseDateTime(strings.TrimSpace(s))
	case "array":
		return x.array(depth)
	case "struct":
		return x.structBody(depth)
	}
	return nil, malformed("unknown value type <%s>", name)
}

func parseInt(name, s string) (any, error) {
	s = strings.TrimSpace(s)
	i, err := strconv.ParseInt(s, 10, 64)
	if err == nil {
		return i, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		b, ok := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10)
		if ok {
			return b, nil
		}
	}
	return nil, malformed("<%s> %q is not an integer", name, truncate(s))
}

func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{dateTimeLayout, "2006-01-02T15:04:05", "20060102T15:04:05Z07:00", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, malformed("dateTime.iso8601 %q is not a date", truncate(s))
}

func (x *xmlDecoder) array(depth int) (any, error) {
	if err := x.expectStart("data"); err != nil {
		return nil, err
	}
	out := []any{}
	for {
		tok, err := x.nextSignificant()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if err := x.expectEnd("array"); err != nil {
				return nil, err
			}
			return out, nil
		case xml.StartElement:
			if t.Name.Local != "value" {
				return nil, malformed("unexpected <%s> in array data", t.Name.Local)
			}
			v, err := x.valueBody(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
}

func (x *xmlDecoder) structBody(depth int) (any, error) {
	out := map[string]any{}
	for {
		tok, err := x.nextSignificant()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return out, nil
		case xml.StartElement:
			if t.Name.Local != "member" {
				return nil, malformed("unexpected <%s> in struct", t.Name.Local)
			}
			if err := x.expectStart("name"); err != nil {
				return nil, err
			}
			name, err := x.text("name")
			if err != nil {
				return nil, err
			}
			v, err := x.valueElem(depth + 1)
			if err != nil {
				return nil, err
			}
			if err := x.expectEnd("member"); err != nil {
				return nil, err
			}
			out[name] = v
		}
	}
}
