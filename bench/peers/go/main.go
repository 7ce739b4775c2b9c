// Command go-peer serves one ONNX model over HTTP with POST /predict, calling ONNX Runtime
// through cgo. It is the Go net/http design that bench/compare measures onnxserve against.
//
// Request:  {"data": [...], "shape": [...]}, data nested or flat; shape is required for flat
// data unless only the first dim of the model's input is dynamic.
// Response: {"output": [...flat...], "shape": [...]}, or 400 with {"error": "..."}.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// maxBodyBytes matches onnxserve's default --max-request-bytes.
const maxBodyBytes = 64 << 20

type predictRequest struct {
	Data  any     `json:"data"`
	Shape []int64 `json:"shape"`
}

type predictResponse struct {
	Output []float32 `json:"output"`
	Shape  []int64   `json:"shape"`
}

type errorResponse struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(body); err != nil {
		log.Printf("writing the response failed: %v", err)
	}
}

// flatten appends the numbers of nested arrays to values in row-major order and records the
// shape that the nesting gives in shape. Every array at one depth must have the same length.
func flatten(item any, depth int, shape *[]int64, values *[]float32) error {
	switch v := item.(type) {
	case float64:
		if depth != len(*shape) {
			return fmt.Errorf("data: a number at depth %d, where arrays of depth %d were expected; nested data must be rectangular", depth, len(*shape))
		}
		*values = append(*values, float32(v))
		return nil
	case []any:
		if depth == len(*shape) {
			if len(*values) > 0 {
				return errors.New("data: an array where a number was expected; nested data must be rectangular")
			}
			*shape = append(*shape, int64(len(v)))
		} else if (*shape)[depth] != int64(len(v)) {
			return fmt.Errorf("data: an array of %d items at depth %d, expected %d; nested data must be rectangular", len(v), depth, (*shape)[depth])
		}
		for _, child := range v {
			if err := flatten(child, depth+1, shape, values); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("data: expected numbers or arrays, got %T", item)
	}
}

// resolveShape picks the tensor shape: the nesting of data, else "shape", else the model's
// dims with one dynamic first dim inferred from the value count.
func resolveShape(nested, given, modelDims []int64, count int) ([]int64, error) {
	if len(nested) > 1 {
		if given != nil && !equalShapes(given, nested) {
			return nil, fmt.Errorf("shape %v does not match the nesting of data %v", given, nested)
		}
		return nested, nil
	}
	if given != nil {
		product := int64(1)
		for _, d := range given {
			if d < 0 {
				return nil, fmt.Errorf("shape %v: dims must not be negative", given)
			}
			product *= d
		}
		if product != int64(count) {
			return nil, fmt.Errorf("shape %v has %d elements, but data has %d values", given, product, count)
		}
		return given, nil
	}
	known := int64(1)
	for i, d := range modelDims {
		if d < 0 && i > 0 {
			return nil, fmt.Errorf("the model's input dims %v have an unknown dim after the first; send \"shape\" or nested data", modelDims)
		}
		if i > 0 {
			known *= d
		}
	}
	if len(modelDims) == 0 || known == 0 || int64(count)%known != 0 {
		return nil, fmt.Errorf("%d values do not fit the model's input dims %v; send \"shape\" or nested data", count, modelDims)
	}
	shape := append([]int64{int64(count) / known}, modelDims[1:]...)
	return shape, nil
}

func equalShapes(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func predictHandler(model *Model) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, errorResponse{"use POST"})
			return
		}
		var req predictRequest
		decoder := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		decoder.DisallowUnknownFields()
		if err := decoder.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{"invalid request body: " + err.Error()})
			return
		}
		if req.Data == nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{"missing \"data\""})
			return
		}
		var nested []int64
		var values []float32
		if err := flatten(req.Data, 0, &nested, &values); err != nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{err.Error()})
			return
		}
		shape, err := resolveShape(nested, req.Shape, model.InputDims, len(values))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorResponse{err.Error()})
			return
		}
		output, outShape, err := model.Run(values, shape)
		if errors.Is(err, errInvalidInput) {
			writeJSON(w, http.StatusBadRequest, errorResponse{err.Error()})
			return
		}
		if err != nil {
			log.Printf("inference failed: %v", err)
			writeJSON(w, http.StatusInternalServerError, errorResponse{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, predictResponse{output, outShape})
	}
}

func main() {
	host := flag.String("host", "127.0.0.1", "loopback address to listen on")
	port := flag.Int("port", 0, "TCP port; 0 picks a free port, printed on stdout")
	modelPath := flag.String("model", "", "ONNX model file with one FP32 input (required)")
	intraOpThreads := flag.Int("intra-op-threads", 1, "ONNX Runtime intra-op threads")
	flag.Parse()

	if *modelPath == "" {
		log.Fatal("-model is required")
	}
	if ip := net.ParseIP(*host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("-host %q: only a loopback address is accepted", *host)
	}
	model, err := LoadModel(*modelPath, *intraOpThreads)
	if err != nil {
		log.Fatalf("loading %s failed: %v", *modelPath, err)
	}
	defer model.Close()

	listener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("listening on %s:%d failed: %v", *host, *port, err)
	}
	mux := http.NewServeMux()
	predict := predictHandler(model)
	mux.Handle("/predict", predict)
	// onnxserve's per-model path runs the same handler, whatever the model name.
	mux.HandleFunc("/models/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/predict") {
			writeJSON(w, http.StatusNotFound, errorResponse{"not found: " + r.URL.Path})
			return
		}
		predict(w, r)
	})
	server := &http.Server{Handler: mux}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		server.Close()
	}()

	log.Printf("ONNX Runtime %s, model %s, input dims %v", RuntimeVersion(), *modelPath, model.InputDims)
	fmt.Printf("listening on %s\n", listener.Addr())
	if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serving failed: %v", err)
	}
}
