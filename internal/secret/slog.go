package secret

import (
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
)

// Handler wraps an slog.Handler so that the message, every attribute key and
// string value, and error values pass through r before h sees them, groups
// included. Other values are rendered and, if the rendering holds a secret,
// replaced by the redacted rendering.
//
// Attributes bound with WithAttrs are redacted again whenever r learns new
// secrets, so a logger made before the inventory was loaded is still safe.
func Handler(h slog.Handler, r *Redactor) slog.Handler {
	return &handler{base: h, r: r}
}

// handlerOp is one WithGroup or WithAttrs call, kept unredacted so it can be
// replayed against the base handler when the secret set changes.
type handlerOp struct {
	group string
	attrs []slog.Attr
}

type builtHandler struct {
	gen uint64
	h   slog.Handler
}

type handler struct {
	base  slog.Handler
	r     *Redactor
	ops   []handlerOp
	built atomic.Pointer[builtHandler]
}

// current returns base with ops applied, redacted with the current secrets.
func (h *handler) current() slog.Handler {
	gen := h.r.generation()
	if b := h.built.Load(); b != nil && b.gen == gen {
		return b.h
	}
	inner := h.base
	for _, op := range h.ops {
		if op.attrs == nil {
			inner = inner.WithGroup(h.r.Redact(op.group))
			continue
		}
		inner = inner.WithAttrs(h.redactAttrs(op.attrs))
	}
	// A racing rebuild stores an equivalent handler, so last write wins.
	h.built.Store(&builtHandler{gen: gen, h: inner})
	return inner
}

// Enabled defers to the wrapped handler.
func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.current().Enabled(ctx, level)
}

// Handle redacts the record and passes it on.
func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	inner := h.current()
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.redactAttr(a))
		return true
	})
	return inner.Handle(ctx, out)
}

// WithAttrs records attrs unredacted; current redacts them on use.
func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(handlerOp{attrs: slices.Clone(attrs)})
}

// WithGroup records the group so it can be replayed on rebuild.
func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(handlerOp{group: name})
}

func (h *handler) with(op handlerOp) *handler {
	ops := make([]handlerOp, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &handler{base: h.base, r: h.r, ops: append(ops, op)}
}

func (h *handler) redactAttrs(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.redactAttr(a)
	}
	return out
}

func (h *handler) redactAttr(a slog.Attr) slog.Attr {
	key := h.r.Redact(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(key, h.r.Redact(v.String()))
	case slog.KindGroup:
		return slog.Attr{Key: key, Value: slog.GroupValue(h.redactAttrs(v.Group())...)}
	case slog.KindAny:
		if s, changed := h.redactAny(v.Any()); changed {
			return slog.String(key, s)
		}
	}
	return slog.Attr{Key: key, Value: v}
}

// redactAny checks every form in which the built-in handlers may render x.
// It keeps x itself when none holds a secret, so handlers that inspect
// values (errors.As, structured encoders) still get the original.
func (h *handler) redactAny(x any) (string, bool) {
	verbose := fmt.Sprintf("%+v", x)
	primary := verbose // what the text handler would print
	switch x := x.(type) {
	case error:
		primary = x.Error()
	case []byte:
		primary = string(x)
	case encoding.TextMarshaler:
		if b, err := x.MarshalText(); err == nil {
			primary = string(b)
		}
	}
	forms := []string{primary, verbose}
	if b, err := json.Marshal(x); err == nil {
		forms = append(forms, string(b))
	}
	for _, f := range forms {
		if h.r.Redact(f) != f {
			return h.r.Redact(primary), true
		}
	}
	return "", false
}
