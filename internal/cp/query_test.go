package cp

import (
	"strings"
	"testing"
)

// cpQueryCases is shared by the lexer test and the fuzz seed corpus.
var cpQueryCases = []struct {
	name, query string
	want        string // "" = accepted; else part of the error
}{
	{"select", `SELECT tenant, workspace_id, template FROM cp_claims`, ""},
	{"lower case", `select tenant, workspace_id, template from cp_claims`, ""},
	{"trailing semicolon", "SELECT 1;", ""},
	{"trailing semicolon and comments", "SELECT 1 ; -- done\n/* really */  \n", ""},
	{"leading comments", "-- claims\n/* all of them */ SELECT 1", ""},
	{"with select", `WITH c AS (SELECT * FROM cp_claims) SELECT tenant, workspace_id, template FROM c`, ""},
	{"with recursive and column list", `WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r`, ""},
	{"with materialized", `WITH c AS MATERIALIZED (SELECT 1 AS x), d AS NOT MATERIALIZED (SELECT 2) SELECT * FROM c, d`, ""},
	{"with search clause", `WITH RECURSIVE t(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM t WHERE id < 3) SEARCH DEPTH FIRST BY id SET ord SELECT * FROM t`, ""},
	{"semicolon in string", `SELECT 'a;b' AS tenant`, ""},
	{"doubled quote in string", `SELECT 'it''s; INSERT' AS x`, ""},
	{"semicolon in quoted identifier", `SELECT 1 AS "x;y"`, ""},
	{"keyword as quoted identifier", `SELECT "update", "delete", "into" FROM t`, ""},
	{"doubled quote in identifier", `SELECT 1 AS "a""; INSERT"`, ""},
	{"escape string", `SELECT E'it\'s; DELETE' AS x`, ""},
	{"escape string backslash at end", `SELECT E'\\' AS x`, ""},
	{"backslash in plain string", `SELECT 'a\' AS x`, ""},
	{"dollar quote", `SELECT $$ ; INSERT INTO victim VALUES (1) $$ AS x`, ""},
	{"tagged dollar quote", `SELECT $body$ $$ ; DELETE $body$ AS x`, ""},
	{"dollar quote other tag inside", `SELECT $a$ $b$ ; $b$ $a$ AS x`, ""},
	{"identifier with dollar", `SELECT a$b$c FROM t`, ""},
	{"semicolon in line comment", "SELECT 1 -- ; DROP TABLE t\n", ""},
	{"semicolon in block comment", `SELECT 1 /* ; INSERT */`, ""},
	{"nested block comment", `SELECT 1 /* outer /* inner ; */ still ; comment */`, ""},
	{"words containing keywords", `SELECT updated_at, inserted, deleted_by, into_x FROM t`, ""},
	{"substring for", `SELECT substring(template FROM 1 FOR 3) AS template FROM t`, ""},
	{"for read only", `SELECT 1 FOR READ ONLY`, ""},
	{"bit and unicode strings", `SELECT B'101', X'1F', N'x', U&'d\0061t;a' UESCAPE '\'`, ""},
	{"unicode identifier", `SELECT 1 AS U&"d;a"`, ""},
	{"parenthesised subquery", `SELECT * FROM (SELECT 1) s`, ""},

	{"two statements", `SELECT 1; SELECT 2`, "';' ends the statement before the end"},
	{"two semicolons", `SELECT 1;;`, "';' ends the statement"},
	{"escape", `SELECT 1; ROLLBACK; BEGIN READ WRITE; INSERT INTO victim VALUES (1); COMMIT`, "line 1: ';' ends the statement"},
	{"second line", "SELECT 1\n; SELECT 2", "line 2: ';'"},
	{"string ends before semicolon", `SELECT 'a''' ; SELECT 2`, "';' ends"},
	{"quote in plain string is not escaped by backslash", `SELECT 'a\'; DELETE FROM t; --'`, "';' ends"},
	{"semicolon after comment", `SELECT 1 /* x */; SELECT 2`, "';' ends"},
	{"semicolon after nested comment", `SELECT 1 /* /* */ */; SELECT 2`, "';' ends"},
	{"semicolon after dollar quote", `SELECT $$x$$; SELECT 2`, "';' ends"},
	{"parameter is not a dollar quote", `SELECT $1; SELECT $2`, "';' ends"},
	{"empty", "", "no statement"},
	{"only comments", "-- nothing\n/* here */", "no statement"},
	{"only semicolon", ";", "no statement"},
	{"insert", `INSERT INTO victim VALUES (1)`, "not INSERT"},
	{"update", `UPDATE t SET x = 1`, "not UPDATE"},
	{"values", `VALUES ('a', NULL, 'b')`, "not VALUES"},
	{"table", `TABLE cp_claims`, "not TABLE"},
	{"parenthesised select", `(SELECT 1)`, "not '('"},
	{"explain", `EXPLAIN ANALYZE SELECT 1`, "not EXPLAIN"},
	{"copy", `COPY t TO '/tmp/x'`, "not COPY"},
	{"call", `CALL p()`, "not CALL"},
	{"do", `DO $$ BEGIN END $$`, "not DO"},
	{"set", `SET default_transaction_read_only = off`, "not SET"},
	{"string first", `'SELECT'`, `not "'"`},
	{"select into", `SELECT * INTO newtable FROM cp_claims`, "SELECT … INTO creates a table"},
	{"for update", `SELECT * FROM cp_claims FOR UPDATE`, "FOR UPDATE / FOR SHARE"},
	{"for share", `SELECT * FROM cp_claims FOR SHARE`, "FOR UPDATE / FOR SHARE"},
	{"for no key update", `SELECT * FROM cp_claims FOR NO KEY UPDATE NOWAIT`, "FOR UPDATE / FOR SHARE"},
	{"for key share", `SELECT * FROM cp_claims for key share skip locked`, "FOR UPDATE / FOR SHARE"},
	{"insert cte", `WITH x AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM x`, "INSERT writes"},
	{"update cte", `WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x`, "UPDATE writes"},
	{"delete cte lower case", `with x as (delete from t returning *) select * from x`, "DELETE writes"},
	{"merge cte", `WITH x AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1`, "MERGE writes"},
	{"nested data-modifying cte", `WITH a AS (WITH b AS (DELETE FROM t RETURNING 1) SELECT * FROM b) SELECT * FROM a`, "DELETE writes"},
	{"with ending in insert", `WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a`, "INSERT writes"},
	{"with ending in values", `WITH a AS (SELECT 1) VALUES (1)`, "WITH must end in a SELECT, not VALUES"},
	{"with ending in table", `WITH a AS (SELECT 1) TABLE a`, "WITH must end in a SELECT, not TABLE"},
	{"with without main statement", `WITH a AS (SELECT 1)`, "WITH must end in a SELECT"},
	{"keyword after number", `SELECT 1INTO t`, "INTO creates"},
	{"keyword after comment", `SELECT/**/INTO t`, "INTO creates"},
	{"escape string hides nothing", `SELECT E'a\\'; DELETE FROM t`, "';' ends"},
	{"unterminated string", `SELECT 'abc`, "unterminated string literal"},
	{"unterminated escape string", `SELECT E'abc\'`, "unterminated string literal"},
	{"unterminated identifier", `SELECT "abc`, "unterminated quoted identifier"},
	{"unterminated comment", `SELECT 1 /* /* */`, "unterminated /* comment"},
	{"unterminated dollar quote", `SELECT $a$ x $b$`, "unterminated dollar-quoted string $a$"},
	{"unbalanced close", `WITH a AS (SELECT 1)) SELECT 1`, "unbalanced ')'"},
	{"unbalanced open", `SELECT (1`, "unbalanced '('"},
	{"nul", "SELECT 1\x00; DELETE FROM t", "NUL byte"},
}

func TestCheckQuery(t *testing.T) {
	for _, tt := range cpQueryCases {
		t.Run(tt.name, func(t *testing.T) {
			err := checkQuery(tt.query)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("checkQuery(%q): %v, want it accepted", tt.query, err)
			case tt.want != "" && err == nil:
				t.Errorf("checkQuery(%q) accepted, want an error containing %q", tt.query, tt.want)
			case tt.want != "" && (!strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "--cp-query: ")):
				t.Errorf("checkQuery(%q): %v, want an error naming --cp-query and containing %q", tt.query, err, tt.want)
			}
		})
	}
}
