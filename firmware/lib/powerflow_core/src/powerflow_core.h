// Umbrella header of the portable powerflow firmware core (no Arduino deps).
#pragma once
#include "pf_backoff.h"
#include "pf_crc.h"
#include "pf_energy.h"
#include "pf_forwarder.h"
#include "pf_inflight.h"
#include "pf_json.h"
#include "pf_payload.h"
#include "pf_pzem.h"
#include "pf_record.h"
#include "pf_ring.h"
#include "pf_scheduler.h"
#include "pf_storage.h"
#include "pf_time.h"

#ifndef PF_FW_VERSION
#define PF_FW_VERSION "1.0.0"
#endif
