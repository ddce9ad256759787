package hardened

//go:generate go run mkclasses.go
