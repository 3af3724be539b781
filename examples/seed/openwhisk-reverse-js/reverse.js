function main(params) {
    return {payload: params.payload.split("").reverse().join("")};
}
