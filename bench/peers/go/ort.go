package main

// #cgo LDFLAGS: -lonnxruntime
// #include <stdlib.h>
// #include "ortshim.h"
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// errInvalidInput marks errors caused by the request, for which the handler returns 400.
var errInvalidInput = errors.New("invalid input")

// Model is one ONNX Runtime session with one float input and one output. Its methods are safe
// for concurrent use because OrtApi::Run is thread-safe on a shared session.
type Model struct {
	shim C.ortshim_model_t
	// InputDims are the first input's dims, -1 where a dim is dynamic.
	InputDims []int64
}

// RuntimeVersion returns the version of the loaded ONNX Runtime library.
func RuntimeVersion() string {
	return C.GoString(C.ortshim_version())
}

// takeError converts an error string from the shim into a Go error and frees it.
func takeError(message *C.char, invalid C.int) error {
	text := C.GoString(message)
	C.free(unsafe.Pointer(message))
	if invalid != 0 {
		return fmt.Errorf("%w: %s", errInvalidInput, text)
	}
	return errors.New(text)
}

// LoadModel creates a session for the model at path with the given intra-op thread count.
func LoadModel(path string, intraOpThreads int) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := &Model{}
	if message := C.ortshim_load(cpath, C.int(intraOpThreads), &m.shim); message != nil {
		C.ortshim_unload(&m.shim)
		return nil, takeError(message, 0)
	}
	if m.shim.input_type != C.ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT {
		C.ortshim_unload(&m.shim)
		return nil, fmt.Errorf("%s: the first input is not FP32", path)
	}
	rank := int(m.shim.input_rank)
	m.InputDims = make([]int64, rank)
	for i := 0; i < rank; i++ {
		m.InputDims[i] = int64(m.shim.input_dims[i])
	}
	return m, nil
}

// Close releases the session.
func (m *Model) Close() {
	C.ortshim_unload(&m.shim)
}

// Run runs the model on data with the given shape and returns a copy of the output and its
// shape. Errors wrap errInvalidInput when ONNX Runtime rejected the input.
func (m *Model) Run(data []float32, shape []int64) ([]float32, []int64, error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%w: data is empty", errInvalidInput)
	}
	dims := make([]C.int64_t, len(shape))
	for i, d := range shape {
		dims[i] = C.int64_t(d)
	}
	var output C.ortshim_output_t
	var invalid C.int
	// The shim wraps data in a tensor and releases it before returning, so no Go pointer is
	// kept by C after the call.
	message := C.ortshim_run(&m.shim, (*C.float)(unsafe.Pointer(&data[0])), C.size_t(len(data)),
		&dims[0], C.size_t(len(dims)), &output, &invalid)
	if message != nil {
		return nil, nil, takeError(message, invalid)
	}
	defer C.ortshim_release_output(&output)

	values := make([]float32, int(output.count))
	if len(values) > 0 {
		copy(values, unsafe.Slice((*float32)(unsafe.Pointer(output.data)), len(values)))
	}
	outShape := make([]int64, int(output.rank))
	for i := range outShape {
		outShape[i] = int64(output.dims[i])
	}
	return values, outShape, nil
}
