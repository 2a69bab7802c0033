package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/sluicemq/sluice/wire"
)

// Content-based filters: a subscription's filter may be a CEL expression (wire.FilterCEL) over each
// record, delivered when it yields true. Its variables:
//
//	key        bytes                 the record's key (empty bytes for a null key)
//	headers    map(string, string)   the record's headers; of a repeated name, the last one
//	timestamp  google.protobuf.Timestamp  the record's timestamp (ms since the epoch)
//	value      dyn                   the value parsed as JSON when it is JSON (objects are maps,
//	                                 numbers doubles), else its bytes
//	topic      string                the record's topic (useful under a pattern)
//
// for example `value.temp > 30 && headers["region"] == "eu"`. The expression is parsed, type-checked
// (it must yield a bool) and planned once, at Subscribe; one that does not is CodeInvalidRequest
// with CEL's message. An evaluation stops at celCostLimit (CEL's runtime cost units); a record whose
// evaluation errs (a missing map key, a field of a non-JSON value, a type mismatch) does not match,
// as a WHERE clause's NULL does not: `has(value.temp)` and `"region" in headers` test presence. A
// record whose evaluation exceeds the cost limit ends the subscription (CodeInvalidRequest), rather
// than be silently dropped.
//
// Only the variables the expression names are built for a record: the headers map and the parsed
// JSON value (the costs) are made on first use. The commonest expression, header comparisons joined
// by &&, is not evaluated by CEL at all: it is matched as header terms (celHeaderTerms).

// celCostLimit bounds one record's evaluation, in CEL's runtime cost units (about one per operation,
// plus the size of strings and lists compared or built). A predicate of a few comparisons costs
// under 20; a comprehension over a large JSON array is what it stops.
const celCostLimit = 100_000

// celEnv declares the filter variables. It is built once: an Env is safe for concurrent use.
var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("key", cel.BytesType),
		cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("timestamp", cel.TimestampType),
		cel.Variable("value", cel.DynType),
		cel.Variable("topic", cel.StringType),
	)
	if err != nil {
		panic(fmt.Sprintf("engine: filter CEL environment: %v", err)) // a bug: the declarations are fixed
	}
	return env
}()

// compileCEL compiles a filter expression once for a subscription. An expression that only compares
// headers to strings (celHeaderTerms) comes back as header terms instead, with no program: it is
// matched as header filters are, without CEL's per-record evaluation.
func compileCEL(src string) (cel.Program, []filterTerm, error) {
	ast, iss := celEnv.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "filter: " + iss.Err().Error()}
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf(
			"filter: %q yields %s, not bool", src, ast.OutputType())}
	}
	if terms, ok := celHeaderTerms(ast.NativeRep().Expr(), nil); ok {
		return nil, terms, nil
	}
	prg, err := celEnv.Program(ast, cel.CostLimit(celCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, nil, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: "filter: " + err.Error()}
	}
	return prg, nil, nil
}

// celHeaderTerms recognises the commonest filter, a conjunction of `headers["k"] == "v"` (either
// way round) and `"k" in headers`, and appends it to terms as header terms with CEL's meaning: a
// comparison reads the header's last value (lastValue) and fails when the header is missing, as the
// map lookup's error does. ok is false for any other expression.
func celHeaderTerms(e celast.Expr, terms []filterTerm) (_ []filterTerm, ok bool) {
	if e.Kind() != celast.CallKind || e.AsCall().IsMemberFunction() {
		return nil, false
	}
	call := e.AsCall()
	args := call.Args()
	if len(args) != 2 {
		return nil, false
	}
	switch call.FunctionName() {
	case operators.LogicalAnd:
		if terms, ok = celHeaderTerms(args[0], terms); !ok {
			return nil, false
		}
		return celHeaderTerms(args[1], terms)
	case operators.In:
		if k, ok := celString(args[0]); ok && celIdent(args[1], "headers") {
			return append(terms, filterTerm{key: []byte(k)}), true
		}
	case operators.Equals:
		for _, pair := range [][2]celast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			k, ok1 := celHeaderIndex(pair[0])
			v, ok2 := celString(pair[1])
			if ok1 && ok2 {
				return append(terms, filterTerm{key: []byte(k), value: []byte(v), hasValue: true, lastValue: true}), true
			}
		}
	}
	return nil, false
}

// celHeaderIndex matches headers["k"], returning k.
func celHeaderIndex(e celast.Expr) (string, bool) {
	if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != operators.Index || len(e.AsCall().Args()) != 2 {
		return "", false
	}
	args := e.AsCall().Args()
	if !celIdent(args[0], "headers") {
		return "", false
	}
	return celString(args[1])
}

func celIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

func celString(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// celRecord is the activation of one record: the variables resolve from it lazily. One per filter,
// reset per record (owner goroutine).
type celRecord struct {
	r     *wire.Record
	topic string

	hdrs      map[string]string // built on first use for r; cleared and reused
	hdrsBuilt bool
	value     any // the parsed value, on first use
	valueDone bool
}

var _ interpreter.Activation = (*celRecord)(nil)

func (a *celRecord) reset(r *wire.Record, topic string) {
	a.r, a.topic, a.hdrsBuilt, a.value, a.valueDone = r, topic, false, nil, false
}

// ResolveName implements interpreter.Activation.
func (a *celRecord) ResolveName(name string) (any, bool) {
	switch name {
	case "key":
		if a.r.Key == nil {
			return types.Bytes{}, true
		}
		return types.Bytes(a.r.Key), true
	case "headers":
		if !a.hdrsBuilt {
			if a.hdrs == nil {
				a.hdrs = make(map[string]string, a.r.HeaderCount())
			}
			clear(a.hdrs)
			a.r.Headers(func(k, v []byte) bool {
				a.hdrs[string(k)] = string(v)
				return true
			})
			a.hdrsBuilt = true
		}
		return a.hdrs, true
	case "timestamp":
		return types.Timestamp{Time: time.UnixMilli(a.r.Timestamp).UTC()}, true
	case "value":
		if !a.valueDone {
			var v any
			if json.Valid(a.r.Value) && json.Unmarshal(a.r.Value, &v) == nil {
				a.value = v
			} else {
				a.value = types.Bytes(a.r.Value)
			}
			a.valueDone = true
		}
		return a.value, true
	case "topic":
		return types.String(a.topic), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *celRecord) Parent() interpreter.Activation { return nil }

// errCELCost ends a subscription whose filter exceeded its cost limit on a record.
var errCELCost = errors.New("engine: filter exceeded its cost limit")

// evalCEL reports whether the record in a matches prg. An evaluation error is no match; exceeding the
// cost limit is an error.
func evalCEL(prg cel.Program, a *celRecord) (bool, error) {
	out, _, err := prg.Eval(a)
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
			return false, &wire.ProtocolError{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf(
				"%v (%d) at offset %d", errCELCost, celCostLimit, a.r.Offset)}
		}
		return false, nil
	}
	b, ok := out.Value().(bool)
	return ok && b, nil
}
