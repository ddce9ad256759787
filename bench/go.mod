module github.com/hardalloc/hardalloc/bench

go 1.26.0

replace github.com/hardalloc/hardalloc => ../

require (
	github.com/hardalloc/hardalloc v0.0.0-00010101000000-000000000000
	modernc.org/memory v1.12.1
)

require golang.org/x/sys v0.49.0
