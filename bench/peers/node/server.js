'use strict';
// A Node.js peer for bench/compare: one ONNX model served over node:http with POST /predict,
// run by onnxruntime-node (the npm package, version 1.29.0). bench/peers/build.sh installs the
// package into the cache; start it with NODE_PATH pointing at that node_modules folder.
//
// Request:  {"data": [...], "shape": [...]}, data nested or flat; shape is required for flat
// data unless only the first dim of the model's input is dynamic.
// Response: {"output": [...flat...], "shape": [...]}, or 400 with {"error": "..."}.
//
// Usage: node server.js --model FILE [--host 127.0.0.1] [--port 0] [--intra-op-threads 1]
// Prints "listening on HOST:PORT" on stdout once the model is loaded.

const http = require('node:http');
const net = require('node:net');
const { parseArgs } = require('node:util');
const ort = require('onnxruntime-node');

// The same limit as onnxserve's default --max-request-bytes.
const MAX_BODY_BYTES = 64 * 1024 * 1024;

class RequestError extends Error {}

function isLoopback(host) {
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

// Flattens nested arrays in row-major order and returns the values and the shape that the
// nesting gives. Every array at one depth must have the same length.
function flatten(data) {
  const shape = [];
  const values = [];
  const visit = (item, depth) => {
    if (typeof item === 'number') {
      if (depth !== shape.length) {
        throw new RequestError(`data: a number at depth ${depth}, where arrays of depth ` +
          `${shape.length} were expected; nested data must be rectangular`);
      }
      values.push(item);
    } else if (Array.isArray(item)) {
      if (depth === shape.length) {
        if (values.length > 0) {
          throw new RequestError('data: an array where a number was expected; nested data must be rectangular');
        }
        shape.push(item.length);
      } else if (shape[depth] !== item.length) {
        throw new RequestError(`data: an array of ${item.length} items at depth ${depth}, ` +
          `expected ${shape[depth]}; nested data must be rectangular`);
      }
      for (const child of item) visit(child, depth + 1);
    } else {
      throw new RequestError(`data: expected numbers or arrays, got ${JSON.stringify(item)}`);
    }
  };
  visit(data, 0);
  return { values, nested: shape };
}

// Chooses the tensor shape: the nesting of data, else "shape", else the model's dims with one
// dynamic first dim inferred from the value count.
function resolveShape(nested, given, modelDims, count) {
  if (given !== undefined && (!Array.isArray(given) ||
      !given.every((d) => Number.isInteger(d) && d >= 0))) {
    throw new RequestError('shape: expected an array of non-negative integers');
  }
  if (nested.length > 1) {
    if (given !== undefined && given.join(',') !== nested.join(',')) {
      throw new RequestError(`shape [${given}] does not match the nesting of data [${nested}]`);
    }
    return nested;
  }
  if (given !== undefined) {
    const product = given.reduce((a, b) => a * b, 1);
    if (product !== count) {
      throw new RequestError(`shape [${given}] has ${product} elements, but data has ${count} values`);
    }
    return given;
  }
  const rest = modelDims.slice(1);
  if (modelDims.length === 0 || rest.some((d) => typeof d !== 'number' || d < 0)) {
    throw new RequestError(`the model's input dims [${modelDims}] have an unknown dim after the ` +
      'first; send "shape" or nested data');
  }
  const known = rest.reduce((a, b) => a * b, 1);
  if (known === 0 || count % known !== 0) {
    throw new RequestError(`${count} values do not fit the model's input dims [${modelDims}]; ` +
      'send "shape" or nested data');
  }
  return [count / known, ...rest];
}

function send(response, status, body) {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  response.end(text);
}

async function predict(session, modelDims, body) {
  let request;
  try {
    request = JSON.parse(body);
  } catch (error) {
    throw new RequestError(`invalid request body: ${error.message}`);
  }
  if (request === null || typeof request !== 'object' || request.data === undefined) {
    throw new RequestError('missing "data"');
  }
  const { values, nested } = flatten(request.data);
  if (values.length === 0) throw new RequestError('data is empty');
  const shape = resolveShape(nested, request.shape, modelDims, values.length);
  const input = new ort.Tensor('float32', Float32Array.from(values), shape);
  let results;
  try {
    results = await session.run({ [session.inputNames[0]]: input });
  } catch (error) {
    // onnxruntime-node reports a shape the model rejects as a plain Error.
    throw new RequestError(`running the model: ${error.message}`);
  }
  const output = results[session.outputNames[0]];
  return { output: Array.from(output.data), shape: output.dims };
}

function handle(session, modelDims, request, response) {
  const path = request.url.split('?')[0];
  if (path !== '/predict' && !/^\/models\/[^/]+\/predict$/.test(path)) {
    send(response, 404, { error: `not found: ${path}` });
    return;
  }
  if (request.method !== 'POST') {
    response.setHeader('Allow', 'POST');
    send(response, 405, { error: 'use POST' });
    return;
  }
  const chunks = [];
  let size = 0;
  request.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      send(response, 413, { error: `request body larger than ${MAX_BODY_BYTES} bytes` });
      request.destroy();
      return;
    }
    chunks.push(chunk);
  });
  request.on('end', () => {
    predict(session, modelDims, Buffer.concat(chunks).toString('utf8'))
      .then((result) => send(response, 200, result))
      .catch((error) => {
        if (error instanceof RequestError) {
          send(response, 400, { error: error.message });
        } else {
          console.error(`inference failed: ${error.stack}`);
          send(response, 500, { error: error.message });
        }
      });
  });
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      model: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      'intra-op-threads': { type: 'string', default: '1' },
    },
  });
  if (!args.model) throw new Error('--model is required');
  if (!isLoopback(args.host)) {
    throw new Error(`--host ${args.host}: only a loopback address is accepted`);
  }
  const port = Number(args.port);
  const intraOpThreads = Number(args['intra-op-threads']);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port ${args.port}: expected 0 to 65535`);
  }
  if (!Number.isInteger(intraOpThreads) || intraOpThreads < 1) {
    throw new Error(`--intra-op-threads ${args['intra-op-threads']}: expected a positive integer`);
  }

  // The same session settings as the other peers: one inter-op thread, sequential execution,
  // all graph optimizations, and spinning off.
  const session = await ort.InferenceSession.create(args.model, {
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const metadata = session.inputMetadata ? session.inputMetadata[0] : undefined;
  if (!metadata || !metadata.isTensor || metadata.type !== 'float32') {
    throw new Error(`${args.model}: the first input is not an FP32 tensor`);
  }
  // Dynamic dims come back as names (strings); resolveShape treats them as unknown.
  const modelDims = metadata.shape;

  const server = http.createServer((request, response) => {
    handle(session, modelDims, request, response);
  });
  server.keepAliveTimeout = 60000;
  server.listen(port, args.host, () => {
    const address = server.address();
    console.error(`onnxruntime-node ${ort.env.versions.node}, model ${args.model}, ` +
      `input dims [${modelDims}]`);
    console.log(`listening on ${address.address}:${address.port}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((error) => {
  console.error(`node peer: ${error.message}`);
  process.exit(1);
});
