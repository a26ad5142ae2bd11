package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// byteSize is a size flag's value: bytes, or a number with a unit (KiB,
// MiB, GiB; KB, MB, GB), as an operator writes it: --max-bytes 2MiB.
type byteSize int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}

// Set parses s.
func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, factor = strings.TrimSpace(rest), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/factor {
		return fmt.Errorf("%q is not a size (1048576, 512KiB, 2MiB)", s)
	}
	*b = byteSize(n * factor)
	return nil
}

// String is the size in bytes.
func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

// sizeFlag is a --NAME size flag with its BACKFILL_ variable.
func sizeFlag(name string, def int64, usage string) cli.Flag {
	v := byteSize(def)
	return &cli.GenericFlag{Name: name, Value: &v, EnvVars: envVar(name), Usage: usage + " (bytes, or 512KiB, 2MiB)"}
}

// size reads a size flag.
func size(c *cli.Context, name string) int64 {
	if b, ok := c.Generic(name).(*byteSize); ok {
		return int64(*b)
	}
	return 0
}
