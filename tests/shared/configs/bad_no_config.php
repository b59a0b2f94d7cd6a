<?php
$CONF = array('dbtype' => 'mysql');
