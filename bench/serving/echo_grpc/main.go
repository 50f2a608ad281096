// Command echo_grpc answers every gRPC call with a constant, without decoding the request: the
// fastest server a load generator can meet, to show how many calls a second the client itself
// reaches on its core (the serving benchmark's `echo-grpc` row). Usage: echo_grpc PORT
package main

import (
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// answer is a ModelInferResponse{model_name: "echo"}, encoded by hand.
var answer = []byte{0x0a, 0x04, 'e', 'c', 'h', 'o'}

// raw passes messages through as bytes.
type raw struct{}

func (raw) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (raw) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}
func (raw) Name() string { return "proto" }

var _ encoding.Codec = raw{}

func handle(_ any, stream grpc.ServerStream) error {
	var request []byte
	if err := stream.RecvMsg(&request); err != nil {
		return err
	}
	reply := answer
	return stream.SendMsg(&reply)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: echo_grpc PORT")
		os.Exit(2)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := grpc.NewServer(grpc.ForceServerCodec(raw{}), grpc.UnknownServiceHandler(handle))
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
