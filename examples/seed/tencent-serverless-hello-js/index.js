module.exports.hello = async (event, context) => {
  return {
    message: 'Hello, Tencent Cloud!'
  }
}
