package AcsTest::Defaults;

# Lets a plain `prove -j2 -r t` (after ./build.sh build) find the module:
# TEST_NGINX_LOAD_MODULES defaults to the built objs/*.so when unset.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;

my $so = File::Spec->rel2abs(dirname(__FILE__)
                             . '/../../../objs/ngx_http_acs_notify_module.so');

$ENV{TEST_NGINX_LOAD_MODULES} //= $so if -f $so;

1;
