/* Results of onnxserve-bench: the table, CSV, JSON and the SVG chart. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "loadgen.h"

static const char *load_column(const bench_options *options) {
  return options->closed_loop ? "concurrency" : "request_rate";
}

/* Writes the errors as "503:12 connect:1", or "0" when there are none. */
static void format_errors(const bench_errors *errors, char *text, size_t size) {
  size_t used = 0;
  text[0] = '\0';
  for (int status = 0; status < 600; status++) {
    if (errors->by_status[status] == 0) continue;
    int written = snprintf(text + used, size - used, "%s%d:%llu", used ? " " : "", status,
                           (unsigned long long)errors->by_status[status]);
    if (written < 0 || (size_t)written >= size - used) return;
    used += (size_t)written;
  }
  for (int kind = 0; kind < BENCH_ERROR_KINDS; kind++) {
    if (errors->by_kind[kind] == 0) continue;
    int written = snprintf(text + used, size - used, "%s%s:%llu", used ? " " : "",
                           bench_error_kind_names[kind],
                           (unsigned long long)errors->by_kind[kind]);
    if (written < 0 || (size_t)written >= size - used) return;
    used += (size_t)written;
  }
  if (used == 0) snprintf(text, size, "0");
}

void bench_print_table(FILE *out, const bench_options *options, const bench_step_result *results,
                       int count) {
  fprintf(out, "%s, model %s, protocol %s, %s loop\n", options->label, options->model,
          bench_protocol_name(options->protocol), options->closed_loop ? "closed" : "open");
  fprintf(out, "%12s %10s %9s %9s %9s %9s %9s %8s %7s %10s %10s  %s\n",
          options->closed_loop ? "concurrency" : "rate (1/s)", "thru (1/s)", "p50 ms", "p90 ms",
          "p99 ms", "p99.9 ms", "max ms", "requests", "windows", "queue us", "compute us",
          "errors");
  for (int i = 0; i < count; i++) {
    const bench_step_result *r = &results[i];
    char queue[32] = "-";
    char compute[32] = "-";
    if (r->has_server_stats) {
      snprintf(queue, sizeof(queue), "%.1f", r->server_queue_us);
      snprintf(compute, sizeof(compute), "%.1f", r->server_compute_us);
    }
    char windows[32];
    snprintf(windows, sizeof(windows), "%d%s", r->windows, r->stable ? "" : "*");
    char errors[512];
    format_errors(&r->errors, errors, sizeof(errors));
    fprintf(out, "%12g %10.1f %9.3f %9.3f %9.3f %9.3f %9.3f %8zu %7s %10s %10s  %s\n", r->load,
            r->summary.throughput, r->summary.p50_ms, r->summary.p90_ms, r->summary.p99_ms,
            r->summary.p999_ms, r->summary.max_ms, r->summary.count, windows, queue, compute,
            errors);
  }
  int unstable = 0;
  for (int i = 0; i < count; i++) unstable |= !results[i].stable;
  if (unstable) {
    fprintf(out, "* the last two windows did not agree within %g%% (or only one ran)\n",
            options->stability_percent);
  }
}

/* Opens path for writing, "-" meaning stdout. */
static FILE *open_output(const char *path) {
  if (strcmp(path, "-") == 0) return stdout;
  FILE *out = fopen(path, "w");
  if (out == NULL) perror(path);
  return out;
}

static int close_output(FILE *out, const char *path) {
  if (out == stdout) return fflush(stdout) == 0 ? 0 : -1;
  if (fclose(out) != 0) {
    perror(path);
    return -1;
  }
  return 0;
}

int bench_write_csv(const char *path, const bench_options *options,
                    const bench_step_result *results, int count) {
  FILE *out = open_output(path);
  if (out == NULL) return -1;
  fprintf(out, "label,model,protocol,mode,%s,throughput,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,"
               "requests,errors,windows,stable,server_queue_us,server_compute_us\n",
          load_column(options));
  for (int i = 0; i < count; i++) {
    const bench_step_result *r = &results[i];
    char errors[512];
    format_errors(&r->errors, errors, sizeof(errors));
    /* The label is quoted, with quotes doubled, because it is free text. */
    fputc('"', out);
    for (const char *c = options->label; *c != '\0'; c++) {
      if (*c == '"') fputc('"', out);
      fputc(*c, out);
    }
    fprintf(out, "\",%s,%s,%s,%g,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%zu,%s,%d,%s,", options->model,
            bench_protocol_name(options->protocol), options->closed_loop ? "closed" : "open",
            r->load, r->summary.throughput, r->summary.p50_ms, r->summary.p90_ms,
            r->summary.p99_ms, r->summary.p999_ms, r->summary.max_ms, r->summary.count, errors,
            r->windows, r->stable ? "true" : "false");
    if (r->has_server_stats) {
      fprintf(out, "%.1f,%.1f\n", r->server_queue_us, r->server_compute_us);
    } else {
      fputs(",\n", out);
    }
  }
  return close_output(out, path);
}

static json_t *errors_object(const bench_errors *errors) {
  json_t *object = json_object();
  char key[16];
  for (int status = 0; status < 600; status++) {
    if (errors->by_status[status] == 0) continue;
    snprintf(key, sizeof(key), "%d", status);
    json_object_set_new(object, key, json_integer((json_int_t)errors->by_status[status]));
  }
  for (int kind = 0; kind < BENCH_ERROR_KINDS; kind++) {
    if (errors->by_kind[kind] == 0) continue;
    json_object_set_new(object, bench_error_kind_names[kind],
                        json_integer((json_int_t)errors->by_kind[kind]));
  }
  return object;
}

int bench_write_json(const char *path, const bench_options *options,
                     const bench_step_result *results, int count) {
  json_t *document = json_object();
  json_object_set_new(document, "label", json_string(options->label));
  json_object_set_new(document, "model", json_string(options->model));
  json_object_set_new(document, "protocol", json_string(bench_protocol_name(options->protocol)));
  json_object_set_new(document, "mode", json_string(options->closed_loop ? "closed" : "open"));
  json_t *steps = json_array();
  for (int i = 0; i < count; i++) {
    const bench_step_result *r = &results[i];
    json_t *step = json_object();
    if (options->closed_loop) {
      json_object_set_new(step, "concurrency", json_integer((json_int_t)r->load));
    } else {
      json_object_set_new(step, "request_rate", json_real(r->load));
    }
    json_object_set_new(step, "throughput", json_real(r->summary.throughput));
    json_object_set_new(step, "p50_ms", json_real(r->summary.p50_ms));
    json_object_set_new(step, "p90_ms", json_real(r->summary.p90_ms));
    json_object_set_new(step, "p99_ms", json_real(r->summary.p99_ms));
    json_object_set_new(step, "p999_ms", json_real(r->summary.p999_ms));
    json_object_set_new(step, "max_ms", json_real(r->summary.max_ms));
    json_object_set_new(step, "requests", json_integer((json_int_t)r->summary.count));
    json_object_set_new(step, "errors", errors_object(&r->errors));
    json_object_set_new(step, "windows", json_integer(r->windows));
    json_object_set_new(step, "stable", json_boolean(r->stable));
    json_object_set_new(step, "server_queue_us",
                        r->has_server_stats ? json_real(r->server_queue_us) : json_null());
    json_object_set_new(step, "server_compute_us",
                        r->has_server_stats ? json_real(r->server_compute_us) : json_null());
    json_array_append_new(steps, step);
  }
  json_object_set_new(document, "steps", steps);
  FILE *out = open_output(path);
  int rc = -1;
  if (out != NULL) {
    rc = json_dumpf(document, out, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) == 0 ? 0 : -1;
    fputc('\n', out);
    if (close_output(out, path) != 0) rc = -1;
  }
  json_decref(document);
  return rc;
}

/* Returns a round step for an axis from 0 to max with about five ticks. */
static double tick_step(double max) {
  if (max <= 0) return 1;
  double raw = max / 5;
  double magnitude = pow(10, floor(log10(raw)));
  double fraction = raw / magnitude;
  double nice = 10;
  if (fraction <= 1) {
    nice = 1;
  } else if (fraction <= 2) {
    nice = 2;
  } else if (fraction <= 5) {
    nice = 5;
  }
  return nice * magnitude;
}

/* Writes text with the characters that XML reserves escaped. */
static void write_xml_text(FILE *out, const char *text) {
  for (const char *c = text; *c != '\0'; c++) {
    switch (*c) {
    case '<':
      fputs("&lt;", out);
      break;
    case '>':
      fputs("&gt;", out);
      break;
    case '&':
      fputs("&amp;", out);
      break;
    case '"':
      fputs("&quot;", out);
      break;
    default:
      fputc(*c, out);
    }
  }
}

int bench_write_svg(const char *path, const bench_options *options,
                    const bench_step_result *results, int count) {
  const double width = 640, height = 420;
  const double left = 70, right = 150, top = 40, bottom = 60;
  const double plot_width = width - left - right, plot_height = height - top - bottom;
  double max_x = 0, max_y = 0;
  for (int i = 0; i < count; i++) {
    max_x = fmax(max_x, results[i].summary.throughput);
    max_y = fmax(max_y, results[i].summary.p99_ms);
  }
  double x_step = tick_step(max_x), y_step = tick_step(max_y);
  double x_top = x_step * ceil(max_x / x_step), y_top = y_step * ceil(max_y / y_step);
  if (x_top <= 0) x_top = x_step;
  if (y_top <= 0) y_top = y_step;

  FILE *out = open_output(path);
  if (out == NULL) return -1;
  fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
               "viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"12\">\n",
          width, height, width, height);
  fprintf(out, "<rect width=\"%g\" height=\"%g\" fill=\"white\"/>\n", width, height);
  fputs("<text x=\"320\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">", out);
  write_xml_text(out, options->label);
  fputs(": ", out);
  write_xml_text(out, options->model);
  fprintf(out, ", %s, %s loop</text>\n", bench_protocol_name(options->protocol),
          options->closed_loop ? "closed" : "open");

  /* Grid, ticks and axis labels. */
  for (double x = 0; x <= x_top + x_step / 2; x += x_step) {
    double px = left + x / x_top * plot_width;
    fprintf(out, "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#ddd\"/>\n", px, top,
            px, top + plot_height);
    fprintf(out, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%g</text>\n", px,
            top + plot_height + 16, x);
  }
  for (double y = 0; y <= y_top + y_step / 2; y += y_step) {
    double py = top + plot_height - y / y_top * plot_height;
    fprintf(out, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", left, py,
            left + plot_width, py);
    fprintf(out, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left - 6, py + 4, y);
  }
  fprintf(out, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" "
               "stroke=\"black\"/>\n", left, top, plot_width, plot_height);
  fprintf(out, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">throughput (responses/s)</text>\n",
          left + plot_width / 2, height - 18);
  fprintf(out, "<text x=\"16\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 16 %g)\">"
               "latency (ms)</text>\n", top + plot_height / 2, top + plot_height / 2);

  /* One line per percentile, with a dot at each step. */
  const char *names[2] = {"p50", "p99"};
  const char *colors[2] = {"#1f77b4", "#d62728"};
  for (int line = 0; line < 2; line++) {
    fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[line]);
    for (int i = 0; i < count; i++) {
      double value = line == 0 ? results[i].summary.p50_ms : results[i].summary.p99_ms;
      fprintf(out, "%s%.1f,%.1f", i ? " " : "",
              left + results[i].summary.throughput / x_top * plot_width,
              top + plot_height - value / y_top * plot_height);
    }
    fputs("\"/>\n", out);
    for (int i = 0; i < count; i++) {
      double value = line == 0 ? results[i].summary.p50_ms : results[i].summary.p99_ms;
      fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
              left + results[i].summary.throughput / x_top * plot_width,
              top + plot_height - value / y_top * plot_height, colors[line]);
    }
    if (line == 1) {
      /* Each step's load next to its p99 point. */
      for (int i = 0; i < count; i++) {
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">%s%g</text>\n",
                left + results[i].summary.throughput / x_top * plot_width + 5,
                top + plot_height - results[i].summary.p99_ms / y_top * plot_height - 5,
                options->closed_loop ? "c=" : "r=", results[i].load);
      }
    }
    double legend_y = top + 10 + 20 * line;
    fprintf(out, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" "
                 "stroke-width=\"2\"/>\n", left + plot_width + 12, legend_y,
            left + plot_width + 36, legend_y, colors[line]);
    fprintf(out, "<text x=\"%g\" y=\"%g\">%s latency</text>\n", left + plot_width + 42,
            legend_y + 4, names[line]);
  }
  fprintf(out, "<text x=\"%g\" y=\"%g\" font-size=\"10\">%s</text>\n", left + plot_width + 12,
          top + 60, options->closed_loop ? "c: connections" : "r: requests/s");
  fputs("</svg>\n", out);
  return close_output(out, path);
}
