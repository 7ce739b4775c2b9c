/*
 * GPU metrics through NVIDIA's management library (NVML), loaded at run time with dlopen so that
 * the server neither links against it nor needs it: without libnvidia-ml.so.1, or without a
 * device, the GPU metrics are absent.
 *
 * The few NVML entry points used here are declared from their documented C signatures.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

typedef struct nvml_device *nvml_device_t;
typedef struct nvml_memory {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvml_memory_t;
typedef struct nvml_utilization {
    unsigned int gpu;    /* percent of time a kernel ran over the last sample period */
    unsigned int memory;
} nvml_utilization_t;

#define NVML_SUCCESS 0

static struct {
    int (*init)(void);
    int (*device_by_index)(unsigned int index, nvml_device_t *device);
    int (*memory)(nvml_device_t device, nvml_memory_t *memory);
    int (*utilization)(nvml_device_t device, nvml_utilization_t *utilization);
    bool ready;
} nvml;

static pthread_once_t nvml_once = PTHREAD_ONCE_INIT;

/* Loads NVML once per process; the library stays loaded until exit. */
static void nvml_load(void)
{
    void *library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL)
        return;
    *(void **)&nvml.init = dlsym(library, "nvmlInit_v2");
    *(void **)&nvml.device_by_index = dlsym(library, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&nvml.memory = dlsym(library, "nvmlDeviceGetMemoryInfo");
    *(void **)&nvml.utilization = dlsym(library, "nvmlDeviceGetUtilizationRates");
    nvml.ready = nvml.init != NULL && nvml.device_by_index != NULL && nvml.memory != NULL &&
                 nvml.utilization != NULL && nvml.init() == NVML_SUCCESS;
}

/* Collects the GPU ids that READY models place instances on into used (a bitmap of
 * OXS_MAX_GPU_ID + 1 entries) and returns how many there are. */
#define OXS_MAX_GPU_ID 63
static int gpus_in_use(oxs_server_t *server, bool *used)
{
    int count = 0;
    size_t models = oxs_server_model_count(server);
    memset(used, 0, (OXS_MAX_GPU_ID + 1) * sizeof(*used));
    for (size_t i = 0; i < models; i++) {
        oxs_model_t *model = NULL;
        if (oxs_server_model_at(server, i, &model) != OXS_OK)
            break;
        const oxs_model_config_t *config = oxs_model_config(model);
        for (int g = 0; config != NULL && g < config->instance_group_count; g++) {
            const oxs_instance_group_t *group = &config->instance_groups[g];
            if (group->kind != OXS_INSTANCE_GPU)
                continue;
            /* A group without gpus uses device 0 (scheduler.c places it there). */
            int listed = group->gpu_count > 0 ? group->gpu_count : 1;
            for (int k = 0; k < listed; k++) {
                int id = group->gpu_count > 0 ? group->gpus[k] : 0;
                if (id >= 0 && id <= OXS_MAX_GPU_ID && !used[id]) {
                    used[id] = true;
                    count++;
                }
            }
        }
        oxs_model_release(model);
    }
    return count;
}

void oxs__gpu_write_metrics(oxs_server_t *server, void (*emit)(void *user, const char *line),
                            void *user)
{
    bool used[OXS_MAX_GPU_ID + 1];
    if (gpus_in_use(server, used) == 0)
        return;
    pthread_once(&nvml_once, nvml_load);
    if (!nvml.ready)
        return;

    char line[256];
    static const char *const families[3][3] = {
        {"onnxserve_gpu_memory_used_bytes", "gauge", "GPU memory in use, in bytes."},
        {"onnxserve_gpu_memory_total_bytes", "gauge", "GPU memory, in bytes."},
        {"onnxserve_gpu_utilization_ratio", "gauge",
         "Share of the last sample period in which a kernel ran on the GPU, 0 to 1."},
    };
    for (int f = 0; f < 3; f++) {
        snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", families[f][0],
                 families[f][2], families[f][0], families[f][1]);
        emit(user, line);
        for (int id = 0; id <= OXS_MAX_GPU_ID; id++) {
            nvml_device_t device = NULL;
            nvml_memory_t memory;
            nvml_utilization_t utilization;
            if (!used[id] || nvml.device_by_index((unsigned int)id, &device) != NVML_SUCCESS)
                continue;
            if (f < 2 && nvml.memory(device, &memory) == NVML_SUCCESS)
                snprintf(line, sizeof(line), "%s{gpu=\"%d\"} %llu\n", families[f][0], id,
                         f == 0 ? memory.used : memory.total);
            else if (f == 2 && nvml.utilization(device, &utilization) == NVML_SUCCESS)
                snprintf(line, sizeof(line), "%s{gpu=\"%d\"} %.2f\n", families[f][0], id,
                         utilization.gpu / 100.0);
            else
                continue;
            emit(user, line);
        }
    }
}
