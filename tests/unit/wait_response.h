/*
 * Waiting for an inference's response in unit tests: a completion callback that hands the
 * response to the thread that submitted the request.
 */
#ifndef OXS_TESTS_WAIT_RESPONSE_H
#define OXS_TESTS_WAIT_RESPONSE_H

#include <pthread.h>

#include "onnxserve.h"

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t done;
    oxs_response_t *response;
} waiter_t;

#define WAITER_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL}

/* The completion callback: user is a waiter_t. */
static inline void on_complete(void *user, oxs_response_t *response)
{
    waiter_t *waiter = user;
    pthread_mutex_lock(&waiter->lock);
    waiter->response = response;
    pthread_cond_signal(&waiter->done);
    pthread_mutex_unlock(&waiter->lock);
}

/* Blocks until the callback has run and returns the response, which the caller destroys. */
static inline oxs_response_t *wait_response(waiter_t *waiter)
{
    pthread_mutex_lock(&waiter->lock);
    while (waiter->response == NULL)
        pthread_cond_wait(&waiter->done, &waiter->lock);
    pthread_mutex_unlock(&waiter->lock);
    return waiter->response;
}

#endif /* OXS_TESTS_WAIT_RESPONSE_H */
