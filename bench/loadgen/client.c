/* The load of onnxserve-bench: keep-alive HTTP/1.1 connections on one libuv loop, the closed
 * and open loops, warm-up and measurement windows, and the GET requests for metadata and the
 * server's statistics. Responses are parsed with http-parser. */
#include <http_parser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "loadgen.h"

#define READ_BUFFER_SIZE 65536
#define RECONNECT_DELAY_MS 100
#define PROGRESS_INTERVAL_MS 500
#define HEADER_NAME "inference-header-content-length"

typedef enum { PURPOSE_LOAD, PURPOSE_CONTROL } conn_purpose;
typedef enum { CONN_CLOSED, CONN_CONNECTING, CONN_WAITING, CONN_IDLE, CONN_BUSY } conn_state;
typedef enum { PHASE_IDLE, PHASE_WARMUP, PHASE_WINDOW, PHASE_STOPPING } step_phase;

typedef struct bench_conn bench_conn;
typedef void (*control_done_cb)(bench_conn *conn, int status);

struct bench_conn {
  uv_tcp_t tcp;
  uv_connect_t connect_request;
  uv_write_t write_request;
  uv_timer_t timer; /* request timeout, or the delay before a reconnect */
  http_parser parser;
  bench_runner *runner;
  conn_purpose purpose;
  conn_state state;
  int tcp_open;     /* tcp is initialized and its close callback has not run */
  int timer_closed; /* the timer's close callback has run */
  int closing;      /* the connection is being closed for good */
  int in_idle_stack;
  /* libuv owns write_request from uv_write until on_write runs, and on_write can run after the
   * response has arrived. A response that completes first sets ready_after_write, so that
   * on_write sends the next request. */
  int write_pending;
  int ready_after_write;
  const bench_request *request;
  uint64_t origin_ns; /* latency counts from here: the send time or the scheduled time */
  int message_complete;
  int status;
  long long binary_header_length;
  char header_field[40];
  size_t header_field_length;
  int header_value_is_binary_length;
  char header_value[24];
  size_t header_value_length;
  int last_header_was_value;
  char *read_buffer; /* allocated at the first read, so unused open-loop slots cost no memory */
  char *body;
  size_t body_length;
  size_t body_capacity;
  /* Control connections only. */
  control_done_cb on_done;
  void *user;
};

typedef struct {
  int done;
  int status;
  char *body;
  size_t length;
} get_result;

struct bench_runner {
  uv_loop_t loop;
  const bench_options *options;
  const bench_inputs *inputs;
  struct sockaddr_storage address;
  char host[300];
  bench_request infer_request;
  bench_request stats_request;
  int stats_enabled;
  http_parser_settings settings;
  int progress;

  /* The step in progress. */
  int step_index;
  double load;
  step_phase phase;
  bench_conn *conns;
  int conn_count;
  int *idle; /* open loop: indices of idle connections, a stack */
  int idle_count;
  int open_count; /* open loop: connections in use, connecting or waiting to reconnect */
  uv_timer_t phase_timer;
  /* Open loop: a timerfd set to the next arrival's time, in nanoseconds of CLOCK_MONOTONIC
   * (uv_hrtime's clock), because libuv's own timers count whole milliseconds. */
  int arrival_fd;
  uv_poll_t arrival_poll;
  uv_timer_t progress_timer;
  bench_poisson schedule;
  uint64_t *backlog; /* open loop: scheduled times of arrivals not yet sent, a ring */
  size_t backlog_head, backlog_count, backlog_capacity;

  /* Measurement. */
  bench_samples samples;
  bench_errors errors;
  uint64_t window_start_ns;
  int window_index; /* windows started in this step */
  bench_summary previous_summary;
  bench_step_result *result;
  /* The server's statistics at each window boundary: entry k at the start of window k + 1. */
  bench_server_stats *snapshots;
};

static void start_connect(bench_conn *conn);
static void close_conn(bench_conn *conn, int for_good);
static void dispatch_backlog(bench_runner *runner);

/* HTTP response parsing ----------------------------------------------------------------------- */

static int on_header_field(http_parser *parser, const char *at, size_t length) {
  bench_conn *conn = parser->data;
  if (conn->last_header_was_value) {
    conn->header_field_length = 0;
    conn->last_header_was_value = 0;
  }
  for (size_t i = 0; i < length && conn->header_field_length < sizeof(conn->header_field) - 1;
       i++) {
    conn->header_field[conn->header_field_length++] = at[i];
  }
  conn->header_field[conn->header_field_length] = '\0';
  return 0;
}

static int on_header_value(http_parser *parser, const char *at, size_t length) {
  bench_conn *conn = parser->data;
  if (!conn->last_header_was_value) {
    conn->last_header_was_value = 1;
    conn->header_value_is_binary_length = strcasecmp(conn->header_field, HEADER_NAME) == 0;
    if (conn->header_value_is_binary_length) conn->header_value_length = 0;
  }
  if (!conn->header_value_is_binary_length) return 0;
  for (size_t i = 0; i < length && conn->header_value_length < sizeof(conn->header_value) - 1;
       i++) {
    conn->header_value[conn->header_value_length++] = at[i];
  }
  conn->header_value[conn->header_value_length] = '\0';
  char *end = NULL;
  long long value = strtoll(conn->header_value, &end, 10);
  conn->binary_header_length = end != conn->header_value && *end == '\0' && value >= 0 ? value : -2;
  return 0;
}

static int on_body(http_parser *parser, const char *at, size_t length) {
  bench_conn *conn = parser->data;
  if (conn->body_length + length + 1 > conn->body_capacity) {
    size_t capacity = conn->body_capacity ? conn->body_capacity : 4096;
    while (capacity < conn->body_length + length + 1) capacity *= 2;
    char *body = realloc(conn->body, capacity);
    if (body == NULL) return -1;
    conn->body = body;
    conn->body_capacity = capacity;
  }
  memcpy(conn->body + conn->body_length, at, length);
  conn->body_length += length;
  conn->body[conn->body_length] = '\0';
  return 0;
}

static int on_message_complete(http_parser *parser) {
  bench_conn *conn = parser->data;
  conn->message_complete = 1;
  conn->status = parser->status_code;
  /* One request is in flight per connection, so anything after the response is not ours. */
  http_parser_pause(parser, 1);
  return 0;
}

static void reset_response(bench_conn *conn) {
  http_parser_init(&conn->parser, HTTP_RESPONSE);
  conn->parser.data = conn;
  conn->message_complete = 0;
  conn->status = 0;
  conn->binary_header_length = -1;
  conn->header_field_length = 0;
  conn->header_value_length = 0;
  conn->last_header_was_value = 0;
  conn->header_value_is_binary_length = 0;
  conn->body_length = 0;
}

/* Recording ----------------------------------------------------------------------------------- */

static void count_error_kind(bench_runner *runner, int kind) {
  if (runner->phase == PHASE_WINDOW) runner->errors.by_kind[kind]++;
}

static void record_response(bench_conn *conn) {
  bench_runner *runner = conn->runner;
  if (runner->phase != PHASE_WINDOW) return;
  if (conn->status != 200) {
    runner->errors.by_status[conn->status > 0 && conn->status < 600 ? conn->status : 0]++;
    return;
  }
  if (conn->binary_header_length == -2 ||
      !bench_check_response(runner->options->protocol, conn->body, conn->body_length,
                            conn->binary_header_length, runner->inputs->output_count)) {
    runner->errors.by_kind[BENCH_ERROR_BAD_RESPONSE]++;
    return;
  }
  uint64_t now = uv_hrtime();
  bench_samples_add(&runner->samples, now > conn->origin_ns ? now - conn->origin_ns : 0);
}

/* Connections --------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle) {
  bench_conn *conn = handle->data;
  if (handle == (uv_handle_t *)&conn->timer) {
    conn->timer_closed = 1;
  } else {
    conn->tcp_open = 0;
  }
  if (conn->closing) {
    /* Load connections live in the step's array, which is freed after the loop stops. */
    if (conn->purpose == PURPOSE_CONTROL && !conn->tcp_open && conn->timer_closed) {
      free(conn->read_buffer);
      free(conn->body);
      free(conn);
    }
    return;
  }
  /* A load connection reconnects once its socket is closed: at once, or when the reconnect
   * delay that its timer counts has passed. */
  if (handle != (uv_handle_t *)&conn->tcp) return;
  if (conn->state != CONN_WAITING || !uv_is_active((uv_handle_t *)&conn->timer)) {
    start_connect(conn);
  }
}

static void send_request(bench_conn *conn, uint64_t origin_ns);

/* After a response or an error on a load connection: count the connection free again. */
static void load_conn_ready(bench_conn *conn) {
  bench_runner *runner = conn->runner;
  if (runner->phase == PHASE_STOPPING || conn->closing) return;
  if (conn->write_pending) {
    conn->ready_after_write = 1;
    return;
  }
  if (runner->options->closed_loop) {
    send_request(conn, uv_hrtime());
    return;
  }
  conn->state = CONN_IDLE;
  if (!conn->in_idle_stack) {
    conn->in_idle_stack = 1;
    runner->idle[runner->idle_count++] = (int)(conn - runner->conns);
  }
  dispatch_backlog(runner);
}

static void finish_control(bench_conn *conn, int status) {
  control_done_cb done = conn->on_done;
  conn->on_done = NULL;
  if (done != NULL) done(conn, status);
  close_conn(conn, 1);
}

/* Closes the socket. A load connection reconnects afterwards unless for_good is set. */
static void close_conn(bench_conn *conn, int for_good) {
  uv_timer_stop(&conn->timer);
  if (for_good && !conn->closing) {
    conn->closing = 1;
    uv_close((uv_handle_t *)&conn->timer, on_handle_closed);
  }
  conn->state = CONN_CLOSED;
  if (conn->tcp_open && !uv_is_closing((uv_handle_t *)&conn->tcp)) {
    uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
  } else if (!conn->tcp_open && !for_good) {
    start_connect(conn);
  }
}

/* Counts a failed request or connection and closes the connection. */
static void fail_conn(bench_conn *conn, int kind) {
  if (conn->purpose == PURPOSE_CONTROL) {
    finish_control(conn, 0);
    return;
  }
  count_error_kind(conn->runner, kind);
  close_conn(conn, 0);
}

static void on_timeout(uv_timer_t *timer) {
  bench_conn *conn = timer->data;
  if (conn->state == CONN_WAITING) {
    if (!conn->tcp_open) start_connect(conn);
    return;
  }
  fail_conn(conn, BENCH_ERROR_TIMEOUT);
}

static void alloc_read_buffer(uv_handle_t *handle, size_t suggested, uv_buf_t *buffer) {
  (void)suggested;
  bench_conn *conn = handle->data;
  if (conn->read_buffer == NULL) conn->read_buffer = malloc(READ_BUFFER_SIZE);
  /* A zero-length buffer makes libuv call on_read with UV_ENOBUFS, which fails the request. */
  *buffer = uv_buf_init(conn->read_buffer, conn->read_buffer != NULL ? READ_BUFFER_SIZE : 0);
}

static void handle_complete_response(bench_conn *conn) {
  uv_timer_stop(&conn->timer);
  int keep_alive = http_should_keep_alive(&conn->parser);
  if (conn->purpose == PURPOSE_CONTROL) {
    finish_control(conn, conn->status);
    return;
  }
  record_response(conn);
  if (!keep_alive) {
    close_conn(conn, 0);
    return;
  }
  load_conn_ready(conn);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buffer) {
  bench_conn *conn = stream->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (conn->state == CONN_BUSY && nread == UV_EOF) {
      /* A body delimited by the end of the connection ends here. */
      http_parser_execute(&conn->parser, &conn->runner->settings, NULL, 0);
      if (conn->message_complete) {
        handle_complete_response(conn);
        if (conn->tcp_open && !conn->closing && conn->state != CONN_CLOSED) close_conn(conn, 0);
        return;
      }
    }
    if (conn->state == CONN_BUSY) {
      fail_conn(conn, conn->parser.nread > 0 ? BENCH_ERROR_BAD_RESPONSE : BENCH_ERROR_CONNECT);
    } else {
      close_conn(conn, conn->purpose == PURPOSE_CONTROL);
    }
    return;
  }
  if (conn->state != CONN_BUSY) {
    /* Bytes with no request in flight: the connection is out of step. */
    fail_conn(conn, BENCH_ERROR_BAD_RESPONSE);
    return;
  }
  size_t parsed = http_parser_execute(&conn->parser, &conn->runner->settings, buffer->base,
                                      (size_t)nread);
  if (conn->message_complete) {
    handle_complete_response(conn);
    return;
  }
  if (HTTP_PARSER_ERRNO(&conn->parser) != HPE_OK || parsed != (size_t)nread) {
    fail_conn(conn, BENCH_ERROR_BAD_RESPONSE);
  }
}

static void on_write(uv_write_t *request, int status) {
  bench_conn *conn = request->data;
  conn->write_pending = 0;
  if (status < 0) {
    conn->ready_after_write = 0;
    if (status != UV_ECANCELED && conn->state == CONN_BUSY) fail_conn(conn, BENCH_ERROR_CONNECT);
    return;
  }
  if (conn->ready_after_write) {
    conn->ready_after_write = 0;
    load_conn_ready(conn);
  }
}

static void send_request(bench_conn *conn, uint64_t origin_ns) {
  bench_runner *runner = conn->runner;
  reset_response(conn);
  conn->state = CONN_BUSY;
  conn->origin_ns = origin_ns;
  uv_buf_t buffer = uv_buf_init(conn->request->bytes, (unsigned int)conn->request->length);
  conn->write_request.data = conn;
  int rc = uv_write(&conn->write_request, (uv_stream_t *)&conn->tcp, &buffer, 1, on_write);
  conn->write_pending = rc == 0;
  if (rc != 0) {
    fail_conn(conn, BENCH_ERROR_CONNECT);
    return;
  }
  uv_timer_start(&conn->timer, on_timeout, (uint64_t)(runner->options->timeout_secs * 1000.0),
                 0);
}

/* Closes the socket after a failed connect and retries after a pause, so that a server that is
 * down does not make the loop spin. */
static void wait_to_reconnect(bench_conn *conn) {
  conn->state = CONN_WAITING;
  uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
  uv_timer_start(&conn->timer, on_timeout, RECONNECT_DELAY_MS, 0);
}

static void on_connect(uv_connect_t *request, int status) {
  bench_conn *conn = request->data;
  if (conn->closing) return;
  if (status < 0) {
    if (conn->purpose == PURPOSE_CONTROL) {
      finish_control(conn, 0);
      return;
    }
    count_error_kind(conn->runner, BENCH_ERROR_CONNECT);
    wait_to_reconnect(conn);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  uv_read_start((uv_stream_t *)&conn->tcp, alloc_read_buffer, on_read);
  if (conn->purpose == PURPOSE_CONTROL) {
    send_request(conn, uv_hrtime());
    return;
  }
  load_conn_ready(conn);
}

static void start_connect(bench_conn *conn) {
  bench_runner *runner = conn->runner;
  if (conn->closing || runner->phase == PHASE_STOPPING) return;
  uv_tcp_init(&runner->loop, &conn->tcp);
  conn->tcp.data = conn;
  conn->tcp_open = 1;
  conn->state = CONN_CONNECTING;
  conn->connect_request.data = conn;
  int rc = uv_tcp_connect(&conn->connect_request, &conn->tcp,
                          (const struct sockaddr *)&runner->address, on_connect);
  if (rc != 0) {
    if (conn->purpose == PURPOSE_CONTROL) {
      finish_control(conn, 0);
      return;
    }
    count_error_kind(runner, BENCH_ERROR_CONNECT);
    wait_to_reconnect(conn);
  }
}

/* Prepares conn and its timer. */
static void init_conn(bench_runner *runner, bench_conn *conn, conn_purpose purpose,
                      const bench_request *request) {
  conn->runner = runner;
  conn->purpose = purpose;
  conn->request = request;
  uv_timer_init(&runner->loop, &conn->timer);
  conn->timer.data = conn;
}

/* Control requests ---------------------------------------------------------------------------- */

static int start_control(bench_runner *runner, const bench_request *request, control_done_cb done,
                         void *user) {
  bench_conn *conn = calloc(1, sizeof(*conn));
  if (conn == NULL) return -1;
  init_conn(runner, conn, PURPOSE_CONTROL, request);
  conn->on_done = done;
  conn->user = user;
  start_connect(conn);
  return 0;
}

static void on_get_done(bench_conn *conn, int status) {
  get_result *result = conn->user;
  result->done = 1;
  result->status = status;
  if (status > 0) {
    result->body = conn->body;
    result->length = conn->body_length;
    conn->body = NULL;
    conn->body_capacity = 0;
  }
}

int bench_runner_get(bench_runner *runner, const char *path, char **body, size_t *length) {
  bench_request request;
  *body = NULL;
  *length = 0;
  if (bench_build_get(runner->host, path, &request) != 0) return 0;
  get_result result = {0};
  if (start_control(runner, &request, on_get_done, &result) != 0) {
    bench_free_request(&request);
    return 0;
  }
  uv_run(&runner->loop, UV_RUN_DEFAULT);
  bench_free_request(&request);
  *body = result.body;
  *length = result.length;
  return result.status;
}

static void on_stats_done(bench_conn *conn, int status) {
  bench_server_stats *snapshot = conn->user;
  if (status != 200 ||
      bench_parse_server_stats(conn->body, conn->body_length, snapshot) != 0) {
    memset(snapshot, 0, sizeof(*snapshot));
  }
}

/* Starts a GET of the server's statistics into snapshot slot. The GET completes while the load
 * goes on. */
static void request_snapshot(bench_runner *runner, int slot) {
  memset(&runner->snapshots[slot], 0, sizeof(runner->snapshots[slot]));
  if (!runner->stats_enabled) return;
  start_control(runner, &runner->stats_request, on_stats_done, &runner->snapshots[slot]);
}

/* Open loop ----------------------------------------------------------------------------------- */

static int push_backlog(bench_runner *runner, uint64_t scheduled_ns) {
  if (runner->backlog_count == runner->backlog_capacity) {
    size_t capacity = runner->backlog_capacity ? runner->backlog_capacity * 2 : 1024;
    uint64_t *ring = malloc(capacity * sizeof(*ring));
    if (ring == NULL) return -1;
    for (size_t i = 0; i < runner->backlog_count; i++) {
      ring[i] = runner->backlog[(runner->backlog_head + i) % runner->backlog_capacity];
    }
    free(runner->backlog);
    runner->backlog = ring;
    runner->backlog_head = 0;
    runner->backlog_capacity = capacity;
  }
  runner->backlog[(runner->backlog_head + runner->backlog_count) % runner->backlog_capacity] =
      scheduled_ns;
  runner->backlog_count++;
  return 0;
}

static void dispatch_backlog(bench_runner *runner) {
  while (runner->backlog_count > 0 && runner->idle_count > 0) {
    bench_conn *conn = &runner->conns[runner->idle[--runner->idle_count]];
    conn->in_idle_stack = 0;
    if (conn->state != CONN_IDLE) continue;
    uint64_t scheduled = runner->backlog[runner->backlog_head];
    runner->backlog_head = (runner->backlog_head + 1) % runner->backlog_capacity;
    runner->backlog_count--;
    send_request(conn, scheduled);
  }
  /* Open another connection for each waiting arrival that no connecting one will take. */
  int connecting = 0;
  for (int i = 0; i < runner->open_count; i++) {
    if (runner->conns[i].state == CONN_CONNECTING || runner->conns[i].state == CONN_WAITING) {
      connecting++;
    }
  }
  while ((size_t)connecting < runner->backlog_count && runner->open_count < runner->conn_count) {
    bench_conn *conn = &runner->conns[runner->open_count++];
    start_connect(conn);
    connecting++;
  }
}

static void arrivals_due(bench_runner *runner);

static void on_arrival_ready(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  bench_runner *runner = poll->data;
  uint64_t expirations;
  if (read(runner->arrival_fd, &expirations, sizeof(expirations)) < 0) {
    /* EAGAIN means nothing expired, and arrivals_due rearms the timer either way. */
  }
  arrivals_due(runner);
}

/* Queues every arrival whose time has come, sends what the idle connections can take, and sets
 * the timerfd to the next arrival. */
static void arrivals_due(bench_runner *runner) {
  if (runner->phase == PHASE_STOPPING) return;
  uint64_t now = uv_hrtime();
  while (runner->schedule.next_ns <= now) {
    if (push_backlog(runner, bench_poisson_next(&runner->schedule)) != 0) {
      count_error_kind(runner, BENCH_ERROR_CONNECT);
    }
  }
  dispatch_backlog(runner);
  struct itimerspec next;
  memset(&next, 0, sizeof(next));
  next.it_value.tv_sec = (time_t)(runner->schedule.next_ns / 1000000000u);
  next.it_value.tv_nsec = (long)(runner->schedule.next_ns % 1000000000u);
  timerfd_settime(runner->arrival_fd, TFD_TIMER_ABSTIME, &next, NULL);
}

/* Steps and windows --------------------------------------------------------------------------- */

static void print_progress(bench_runner *runner) {
  if (!runner->progress) return;
  const bench_options *options = runner->options;
  char text[200];
  int used = snprintf(text, sizeof(text), "step %d/%d, %s %g: ", runner->step_index + 1,
                      options->step_count, options->closed_loop ? "concurrency" : "rate",
                      runner->load);
  if (runner->phase == PHASE_WARMUP) {
    snprintf(text + used, sizeof(text) - (size_t)used, "warming up");
  } else {
    double elapsed = (double)(uv_hrtime() - runner->window_start_ns) / 1e9;
    snprintf(text + used, sizeof(text) - (size_t)used,
             "window %d/%d, %zu responses, %.1f/s, %llu errors", runner->window_index,
             options->max_windows, runner->samples.count,
             elapsed > 0 ? (double)runner->samples.count / elapsed : 0.0,
             (unsigned long long)bench_errors_total(&runner->errors));
  }
  fprintf(stderr, "\r%-79.79s", text);
  fflush(stderr);
}

static void on_progress_timer(uv_timer_t *timer) {
  print_progress(timer->data);
}

static void start_window(bench_runner *runner);

/* NOTE: arrivals still in the open loop's backlog when the step stops are dropped without a
 * latency, so an overloaded step shows it by a throughput below its request rate. */
static void stop_step(bench_runner *runner) {
  runner->phase = PHASE_STOPPING;
  uv_timer_stop(&runner->phase_timer);
  uv_timer_stop(&runner->progress_timer);
  if (!runner->options->closed_loop) uv_poll_stop(&runner->arrival_poll);
  for (int i = 0; i < runner->conn_count; i++) {
    bench_conn *conn = &runner->conns[i];
    close_conn(conn, 1);
  }
  if (runner->progress) fputs("\r\033[K", stderr);
}

static void finish_window(bench_runner *runner) {
  uint64_t now = uv_hrtime();
  bench_step_result *result = runner->result;
  bench_summary summary;
  bench_samples_summarize(&runner->samples, now - runner->window_start_ns, &summary);
  summary.count += bench_errors_total(&runner->errors);
  result->summary = summary;
  result->errors = runner->errors;
  result->windows = runner->window_index;
  result->stable = runner->window_index > 1 &&
                   bench_windows_agree(&runner->previous_summary, &summary,
                                       runner->options->stability_percent);
  runner->previous_summary = summary;
  request_snapshot(runner, runner->window_index);
  if (result->stable || runner->window_index >= runner->options->max_windows) {
    stop_step(runner);
    return;
  }
  start_window(runner);
}

static void on_phase_timer(uv_timer_t *timer) {
  bench_runner *runner = timer->data;
  if (runner->phase == PHASE_WARMUP) {
    request_snapshot(runner, 0);
    start_window(runner);
  } else if (runner->phase == PHASE_WINDOW) {
    finish_window(runner);
  }
}

static void start_window(bench_runner *runner) {
  runner->phase = PHASE_WINDOW;
  runner->window_index++;
  bench_samples_clear(&runner->samples);
  memset(&runner->errors, 0, sizeof(runner->errors));
  runner->window_start_ns = uv_hrtime();
  uv_timer_start(&runner->phase_timer, on_phase_timer,
                 (uint64_t)(runner->options->window_secs * 1000.0 + 0.5), 0);
}

int bench_runner_run_step(bench_runner *runner, int step_index, bench_step_result *result) {
  const bench_options *options = runner->options;
  memset(result, 0, sizeof(*result));
  runner->step_index = step_index;
  runner->load = options->steps[step_index];
  runner->result = result;
  result->load = runner->load;
  runner->window_index = 0;
  runner->idle_count = 0;
  runner->open_count = 0;
  runner->backlog_head = 0;
  runner->backlog_count = 0;
  runner->conn_count = options->closed_loop ? (int)runner->load : options->connections;
  runner->conns = calloc((size_t)runner->conn_count, sizeof(bench_conn));
  runner->idle = calloc((size_t)runner->conn_count, sizeof(int));
  runner->snapshots = calloc((size_t)options->max_windows + 1, sizeof(bench_server_stats));
  if (runner->conns == NULL || runner->idle == NULL || runner->snapshots == NULL) {
    fprintf(stderr, "onnxserve-bench: out of memory for %d connections\n", runner->conn_count);
    free(runner->conns);
    free(runner->idle);
    free(runner->snapshots);
    return -1;
  }

  runner->phase = PHASE_WARMUP;
  if (options->closed_loop) {
    for (int i = 0; i < runner->conn_count; i++) {
      init_conn(runner, &runner->conns[i], PURPOSE_LOAD, &runner->infer_request);
      start_connect(&runner->conns[i]);
    }
  } else {
    for (int i = 0; i < runner->conn_count; i++) {
      init_conn(runner, &runner->conns[i], PURPOSE_LOAD, &runner->infer_request);
    }
    bench_poisson_init(&runner->schedule, options->seed + (uint64_t)step_index, runner->load,
                       uv_hrtime());
    uv_poll_start(&runner->arrival_poll, UV_READABLE, on_arrival_ready);
    arrivals_due(runner);
  }
  uv_timer_start(&runner->phase_timer, on_phase_timer,
                 (uint64_t)(options->warmup_secs * 1000.0 + 0.5), 0);
  if (runner->progress) {
    uv_timer_start(&runner->progress_timer, on_progress_timer, 0, PROGRESS_INTERVAL_MS);
  }
  uv_run(&runner->loop, UV_RUN_DEFAULT);

  /* uv_run returns once every connection is closed and the last statistics request is done. */
  const bench_server_stats *before = &runner->snapshots[result->windows > 0 ? result->windows - 1 : 0];
  const bench_server_stats *after = &runner->snapshots[result->windows];
  if (result->windows > 0 && before->valid && after->valid) {
    uint64_t queue_count = after->queue_count - before->queue_count;
    uint64_t compute_count = after->compute_count - before->compute_count;
    if (queue_count > 0 && compute_count > 0) {
      result->has_server_stats = 1;
      result->server_queue_us =
          (double)(after->queue_ns - before->queue_ns) / (double)queue_count / 1000.0;
      result->server_compute_us =
          (double)(after->compute_ns - before->compute_ns) / (double)compute_count / 1000.0;
    }
  }
  for (int i = 0; i < runner->conn_count; i++) {
    free(runner->conns[i].read_buffer);
    free(runner->conns[i].body);
  }
  free(runner->conns);
  free(runner->idle);
  free(runner->snapshots);
  runner->conns = NULL;
  runner->idle = NULL;
  runner->snapshots = NULL;
  runner->phase = PHASE_IDLE;
  return 0;
}

/* Runner -------------------------------------------------------------------------------------- */

/* Resolves the URL's host and port and fills runner->address and runner->host. */
static int resolve_url(bench_runner *runner, const char *url) {
  struct http_parser_url parts;
  http_parser_url_init(&parts);
  if (http_parser_parse_url(url, strlen(url), 0, &parts) != 0 ||
      !(parts.field_set & (1 << UF_SCHEMA)) || !(parts.field_set & (1 << UF_HOST))) {
    fprintf(stderr, "onnxserve-bench: invalid --url \"%s\": expected http://HOST:PORT\n", url);
    return -1;
  }
  if (parts.field_data[UF_SCHEMA].len != 4 ||
      strncasecmp(url + parts.field_data[UF_SCHEMA].off, "http", 4) != 0) {
    fprintf(stderr, "onnxserve-bench: invalid --url \"%s\": only http:// is supported\n", url);
    return -1;
  }
  if ((parts.field_set & (1 << UF_PATH)) && parts.field_data[UF_PATH].len > 1) {
    fprintf(stderr, "onnxserve-bench: invalid --url \"%s\": give no path, only http://HOST:PORT\n",
            url);
    return -1;
  }
  char host[256];
  size_t host_length = parts.field_data[UF_HOST].len;
  if (host_length >= sizeof(host)) {
    fprintf(stderr, "onnxserve-bench: invalid --url \"%s\": the host name is too long\n", url);
    return -1;
  }
  memcpy(host, url + parts.field_data[UF_HOST].off, host_length);
  host[host_length] = '\0';
  unsigned port = (parts.field_set & (1 << UF_PORT)) ? parts.port : 80;
  char port_text[8];
  snprintf(port_text, sizeof(port_text), "%u", port);
  snprintf(runner->host, sizeof(runner->host), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
           port);

  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo *found = NULL;
  int rc = getaddrinfo(host, port_text, &hints, &found);
  if (rc != 0 || found == NULL) {
    fprintf(stderr, "onnxserve-bench: cannot resolve host \"%s\" of --url: %s\n", host,
            gai_strerror(rc));
    return -1;
  }
  memcpy(&runner->address, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  return 0;
}

bench_runner *bench_runner_new(const bench_options *options, const bench_inputs *inputs) {
  bench_runner *runner = calloc(1, sizeof(*runner));
  if (runner == NULL) return NULL;
  runner->options = options;
  runner->inputs = inputs;

  if (resolve_url(runner, options->url) != 0 || uv_loop_init(&runner->loop) != 0) {
    free(runner);
    return NULL;
  }
  runner->settings.on_header_field = on_header_field;
  runner->settings.on_header_value = on_header_value;
  runner->settings.on_body = on_body;
  runner->settings.on_message_complete = on_message_complete;

  runner->progress = !options->quiet && isatty(STDERR_FILENO);
  runner->stats_enabled = !options->no_metadata;
  runner->arrival_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (runner->arrival_fd < 0) {
    perror("onnxserve-bench: timerfd_create");
    uv_loop_close(&runner->loop);
    free(runner);
    return NULL;
  }

  uv_timer_init(&runner->loop, &runner->phase_timer);
  uv_timer_init(&runner->loop, &runner->progress_timer);
  uv_poll_init(&runner->loop, &runner->arrival_poll, runner->arrival_fd);
  runner->phase_timer.data = runner;
  runner->progress_timer.data = runner;
  runner->arrival_poll.data = runner;

  /* Room for a window of 256 Ki responses before the array first grows. */
  if (bench_samples_init(&runner->samples, 1u << 18) != 0) {
    bench_runner_free(runner);
    return NULL;
  }
  return runner;
}

int bench_runner_prepare(bench_runner *runner) {
  const bench_options *options = runner->options;
  if (bench_build_request(options, runner->host, runner->inputs, &runner->infer_request) != 0) {
    return -1;
  }
  char path[1024];
  if (options->model_version != NULL) {
    snprintf(path, sizeof(path), "/v2/models/%s/versions/%s/stats", options->model,
             options->model_version);
  } else {
    snprintf(path, sizeof(path), "/v2/models/%s/stats", options->model);
  }
  return bench_build_get(runner->host, path, &runner->stats_request);
}

void bench_runner_set_inputs(bench_runner *runner, const bench_inputs *inputs) {
  runner->inputs = inputs;
}

const char *bench_runner_host(const bench_runner *runner) {
  return runner->host;
}

void bench_runner_free(bench_runner *runner) {
  if (runner == NULL) return;
  uv_close((uv_handle_t *)&runner->phase_timer, NULL);
  uv_close((uv_handle_t *)&runner->progress_timer, NULL);
  uv_close((uv_handle_t *)&runner->arrival_poll, NULL);
  uv_run(&runner->loop, UV_RUN_DEFAULT);
  uv_loop_close(&runner->loop);
  close(runner->arrival_fd);
  bench_samples_free(&runner->samples);
  bench_free_request(&runner->infer_request);
  bench_free_request(&runner->stats_request);
  free(runner->backlog);
  free(runner);
}
