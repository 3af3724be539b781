package main

import (
	"fmt"
	"net/http"
)

func reverseHandler(w http.ResponseWriter, r *http.Request) {
	msg := []rune(r.URL.Query().Get("msg"))
	for i, j := 0, len(msg)-1; i < j; i, j = i+1, j-1 {
		msg[i], msg[j] = msg[j], msg[i]
	}
	fmt.Fprint(w, string(msg))
}

func main() {
	http.HandleFunc("/", reverseHandler)
	http.ListenAndServe(":8080", nil)
}
