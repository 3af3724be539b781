exports.handler = function(event, context, callback) {
  callback(null, 'hello world');
};
