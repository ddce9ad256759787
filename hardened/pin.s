// Empty: lets pin_norace.go declare the body-less linknamed functions.
