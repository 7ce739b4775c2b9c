module onnxserve.example/bench/peers/go

go 1.19
