package main

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/sluicemq/sluice/client"
)

// fmtPiece is one piece of a --format template: literal bytes, or a record field (verb != 0).
type fmtPiece struct {
	lit  []byte
	verb byte // one of the template verbs: t p o k s K S h T
}

// parseTemplate compiles a kcat-style format string: %t topic, %p partition, %o offset, %k key,
// %s value, %K key length, %S value length (-1 for null), %h headers as k=v separated by commas,
// %T timestamp in Unix milliseconds, %% a percent sign; the escapes of --delim (\n \t \r \0 \\ \xHH)
// are expanded. An unknown verb or a trailing % is an error.
func parseTemplate(s string) ([]fmtPiece, error) {
	b, err := unescape(s)
	if err != nil {
		return nil, err
	}
	var out []fmtPiece
	var lit []byte
	for i := 0; i < len(b); i++ {
		if b[i] != '%' {
			lit = append(lit, b[i])
			continue
		}
		if i+1 == len(b) {
			return nil, errors.New("trailing %")
		}
		i++
		switch v := b[i]; v {
		case '%':
			lit = append(lit, '%')
		case 't', 'p', 'o', 'k', 's', 'K', 'S', 'h', 'T':
			if len(lit) > 0 {
				out = append(out, fmtPiece{lit: lit})
				lit = nil
			}
			out = append(out, fmtPiece{verb: v})
		default:
			return nil, fmt.Errorf("unknown verb %%%c (use %%t %%p %%o %%k %%s %%K %%S %%h %%T %%%%)", v)
		}
	}
	if len(lit) > 0 {
		out = append(out, fmtPiece{lit: lit})
	}
	if !slices.ContainsFunc(out, func(p fmtPiece) bool { return p.verb != 0 }) {
		return nil, errors.New("want raw, json or a template with % verbs (%t %p %o %k %s %K %S %h %T)")
	}
	return out, nil
}

// writeTemplate writes m formatted by tmpl. Errors are bufio.Writer's sticky ones.
func writeTemplate(w *bufio.Writer, tmpl []fmtPiece, m *client.Message) error {
	var num [20]byte
	for _, p := range tmpl {
		switch p.verb {
		case 0:
			w.Write(p.lit)
		case 't':
			w.WriteString(m.Topic)
		case 'p':
			w.Write(strconv.AppendInt(num[:0], int64(m.Partition), 10))
		case 'o':
			w.Write(strconv.AppendInt(num[:0], m.Offset, 10))
		case 'k':
			w.Write(m.Key)
		case 's':
			w.Write(m.Value)
		case 'K':
			w.Write(strconv.AppendInt(num[:0], nullLen(m.Key), 10))
		case 'S':
			w.Write(strconv.AppendInt(num[:0], nullLen(m.Value), 10))
		case 'T':
			w.Write(strconv.AppendInt(num[:0], m.Timestamp.UnixMilli(), 10))
		case 'h':
			first := true
			m.Headers(func(k, v []byte) bool {
				if !first {
					w.WriteByte(',')
				}
				first = false
				w.Write(k)
				w.WriteByte('=')
				w.Write(v)
				return true
			})
		}
	}
	_, err := w.Write(nil)
	return err
}

// nullLen is len(b), or -1 for a null.
func nullLen(b []byte) int64 {
	if b == nil {
		return -1
	}
	return int64(len(b))
}
