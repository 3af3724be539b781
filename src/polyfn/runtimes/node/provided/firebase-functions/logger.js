'use strict';
// require('firebase-functions/logger'): structured logs go to the activation's log (console)
module.exports = require('./index').logger;
